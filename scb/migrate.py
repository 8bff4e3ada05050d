"""Schema migrations: the project database is created and upgraded by Alembic, never by `create_all`.

Why: a hub in the field holds months of readings and the publisher's write-ahead state; a new release must
change its schema in place, without losing a row. Every process calls `upgrade` (through `scb.db.upgrade` or
`scb.db.init_db`) when it starts; it is idempotent and safe when several processes start at once (SQLite: the
whole upgrade runs in one `BEGIN IMMEDIATE` transaction, which serialises them; PostgreSQL: an advisory lock).

Rules for developers (docs/database.md):
- change a model -> add a revision: `scb db revision -m "what changed"` autogenerates one against a scratch
  database at head; review it, commit it with the model change;
- `tests/scb/test_migrations.py` fails while the migrated schema differs from the models.
"""
from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text

from scb.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
#: any 64-bit constant: the PostgreSQL advisory lock key that serialises concurrent upgrades
_PG_LOCK_KEY = 0x5CB_D8_0001


log = logging.getLogger("scb.db")
# Alembic narrates every step at INFO ("setup plugin ...", "Context impl ..."); the hub logs one line instead.
logging.getLogger("alembic").setLevel(logging.WARNING)


class SchemaError(ConfigError):
    """The database schema cannot be brought to this version of SCB (the message says why and what to do)."""


def alembic_config(url: str | None = None) -> AlembicConfig:
    """An Alembic configuration for `scb/migrations`, without an ini file."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _engine(engine_or_url: Engine | str) -> tuple[Engine, bool]:
    from scb.db import make_engine

    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(str(engine_or_url)), True


def lock_for_migration(conn: Connection) -> None:
    """Serialise schema changes between processes (SQLite is already serialised by BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def schema_diff(conn: Connection) -> list[Any]:
    """Differences between the database behind `conn` and the models (Alembic's autogenerate diff).

    The models are those registered on `Base.metadata`: the caller imports the components' model modules
    first (`hub.database.load_models`), since plumbing does not know the components."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from scb.db import Base
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    return [d for d in compare_metadata(ctx, Base.metadata) if not _is_version_table(d)]


def _is_version_table(diff: Any) -> bool:
    return isinstance(diff, tuple) and len(diff) > 1 and getattr(diff[1], "name", None) == VERSION_TABLE


def _adopt_unversioned(conn: Connection, cfg: AlembicConfig) -> None:
    """A database created before migrations existed (by `create_all`): stamp it at head if it matches the
    models exactly; refuse otherwise, rather than guessing which revision it is at."""
    from alembic import command

    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables or not tables:
        return
    diff = schema_diff(conn)
    if diff:
        raise SchemaError(
            "the database has tables but no migration history, and they differ from this version's schema "
            f"({len(diff)} difference{'s' if len(diff) != 1 else ''}, first: {_describe(diff[0])}); "
            "back it up and start with an empty database (docs/database.md)"
        )
    command.stamp(cfg, "head")


def _describe(diff: Any) -> str:
    if isinstance(diff, list) and diff:
        diff = diff[0]
    if isinstance(diff, tuple) and diff:
        names = [getattr(x, "name", None) or (x if isinstance(x, str) else None) for x in diff[1:4]]
        return " ".join([str(diff[0]), *[str(n) for n in names if n]])
    return str(diff)[:200]


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Bring the database to `revision` (default: the newest). Idempotent; every process calls it at start.

    Alembic is imported only when there is something to do (`at_head`). Why: importing it (with Mako) costs each
    process about 37 MB of resident memory for its whole life (issue 16), although on every start but the first
    after an update there is nothing to migrate. Anything but exactly the head (no version table, another
    revision, several heads) goes the whole way through Alembic, under its lock."""
    engine, owned = _engine(engine_or_url)
    try:
        if revision == "head" and at_head(engine):
            return
        _upgrade_with_alembic(engine, revision)
    finally:
        if owned:
            engine.dispose()


def _upgrade_with_alembic(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config()
    try:
        with migration_transaction(engine) as conn:
            cfg.attributes["connection"] = conn
            before = _revision_of(conn)
            _adopt_unversioned(conn, cfg)
            command.upgrade(cfg, revision)
            after = _revision_of(conn)
        if before != after:
            log.info("database migrated from %s to revision %s", before or "empty", after)
    except CommandError as exc:
        message = str(exc)
        if "Can't locate revision" in message or "No such revision" in message:
            raise SchemaError(
                f"the database was migrated by a newer version of SCB ({message}); "
                "upgrade SCB, or restore a backup made before that version"
            ) from None
        raise SchemaError(f"database migration failed: {message}") from None


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """The one transaction a migration runs in (`upgrade`, the alembic command line, a downgrade by hand): all or
    nothing, under the migration lock, so concurrent starts queue up; on SQLite with foreign keys unenforced.

    Why unenforced: SQLite cannot alter most things in place, so a revision rebuilds a table (Alembic's batch mode:
    a copy, then DROP TABLE and a rename), and while foreign keys are enforced it refuses to drop a table that
    other rows refer to (a message its readings, a reading its proof). The pragma only takes effect outside a
    transaction, so it is set on the connection before this one begins (SQLite's own procedure for altering
    tables), every reference is checked before it commits (a dangling one rolls the migration back with a
    SchemaError), and enforcement is back on before the connection returns to the pool."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if raw is not None:
            assert not raw.in_transaction, "the pragma is set before the migration's transaction"
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                lock_for_migration(conn)
                yield conn
                if raw is not None:
                    _check_foreign_keys(conn)
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise SchemaError(f"database migration failed: {len(broken)} row(s) refer to missing rows "
                          f"(first: table {broken[0][0]}, row {broken[0][1]} -> {broken[0][2]})")


def _revision_of(conn: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(.+)$", re.M)


def head_revision_quick() -> str | None:
    """The newest revision, read from the revision files without importing Alembic (0.3 s of a command that
    answers in a second, issue 16); None when the files do not name exactly one head (then ask Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(m.groups() for m in _REVISION_LINE.finditer(path.read_text(encoding="utf-8")))
        revision = found.get("revision", "").strip().strip("'\"")
        if not revision:
            return None
        revisions.add(revision)
        parents |= set(re.findall(r"['\"]([^'\"]+)['\"]", found.get("down_revision", "")))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database is already at the newest revision, asked with one SELECT and no Alembic: a process
    that finds it so has nothing to migrate (`upgrade`, and so every process's start and `scb.db.open_existing`)."""
    head = head_revision_quick()
    if head is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return False
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return list(rows) == [head]


def current_revision(engine_or_url: Engine | str) -> str | None:
    """The revision the database is at (None: not created yet)."""
    from alembic.migration import MigrationContext

    engine, owned = _engine(engine_or_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("scb/migrations has no revisions")
    return head


def new_revision(message: str) -> Path:
    """Autogenerate the next revision (numbered 0002, 0003, ...) from the models against a scratch database at
    head; returns the new file. Raises SchemaError when the models match the migrations already."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from scb.db import make_engine

    if not message.strip():
        raise SchemaError("a revision needs a message (-m 'what changed')")
    script = ScriptDirectory.from_config(alembic_config())
    numbers = [int(m.group(1)) for rev in script.walk_revisions() if (m := re.match(r"(\d+)", rev.revision))]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="scb-revision-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'scratch.sqlite3'}")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                if not schema_diff(conn):
                    raise SchemaError("the models match the migrations: nothing to add")
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    created = sorted(MIGRATIONS_DIR.joinpath("versions").glob(f"{rev_id}_*.py"))
    if not created:
        raise SchemaError("alembic did not write a revision file")
    return created[-1]
