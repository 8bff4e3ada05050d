"""The project database: one SQLAlchemy engine shared by all processes of a hub.

SQLite (the default) runs in WAL mode with `synchronous=FULL`, so a committed row survives kill -9 and a power
cut, and readers never block the writer. PostgreSQL (`postgresql+psycopg://...`) runs the same hub with the same
guarantees by other means (docs/database.md): one writer at a time through an advisory lock instead of SQLite's
`BEGIN IMMEDIATE`, and read-only sessions through `default_transaction_read_only` instead of `PRAGMA query_only`.
Every table of every component hangs off the one `Base.metadata`; the schema is created and upgraded by the
Alembic migrations in `scb/migrations` (see docs/operations.md).
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from scb.errors import ConfigError
from scb.wal import WAL_AUTOCHECKPOINT_PAGES

if TYPE_CHECKING:
    from scb.config import Config


#: Every constraint and index gets a predictable name. Why: migrations must be able to name what they drop or
#: alter (SQLite batch migrations and PostgreSQL both need it), and unnamed constraints get random or no names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every SCB table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Why 30 s: longer than any one transaction of the hub takes on an SD card, short enough that a lock held by a
#: stuck process is reported (as a failing loop) while it lasts.
BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL: the advisory lock every writing transaction of the hub takes first (any 64-bit constant, distinct
#: from scb.migrate's). Why one lock for all writers: the hub's components were written against SQLite, where
#: `BEGIN IMMEDIATE` makes every transaction the only writer; the outbox claim (one message prepared at a time),
#: the channel state advance (a one-time key index must never be used twice), the settlement period rows (one
#: prepared transaction per period) and the window enqueue of the energy manager all rely on that. Taking the same
#: exclusion on PostgreSQL keeps every one of them correct, including any added later, where row locks in each
#: place would be one forgotten `FOR UPDATE` away from a key signed twice. A hub writes a few rows a second, so
#: the concurrency given up costs nothing measurable (docs/database.md).
WRITER_LOCK_KEY = 0x5CB_D8_0002
#: PostgreSQL: how long to wait for the server to accept a connection. Why: without it a black-holed network
#: hangs a loop for the kernel's TCP timeout (minutes) instead of failing into the retry policy.
CONNECT_TIMEOUT_S = 10
#: The SCB-specific URL query parameter naming a 0600 file with the database password (stripped before connecting).
PASSWORD_FILE_PARAM = "password_file"


def safe_url(url: str | URL) -> str:
    """The URL for logs, status and messages: any password masked (`***`). Unparseable text is shown cut short
    rather than raising, because this runs while reporting another error."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        text = str(url)
        return text.split("://", 1)[0] + "://..." if "@" in text else text[:200]


def _postgres_password_file(url: URL) -> tuple[URL, Path | None]:
    """Take SCB's `password_file` out of the URL's query (libpq would reject it); refuse it beside a password."""
    value = url.query.get(PASSWORD_FILE_PARAM)
    if value is None:
        return url, None
    if isinstance(value, tuple):
        raise ConfigError(f"database url: {PASSWORD_FILE_PARAM} given more than once")
    if url.password is not None:
        raise ConfigError("database url has both a password and a password file; keep only the file "
                          "(a password in the URL ends up in shell history and process listings)")
    return url.difference_update_query([PASSWORD_FILE_PARAM]), Path(value).expanduser()




#: between two attempts of _switch_to_wal
_WAL_RETRY_S = 0.01


def _switch_to_wal(cur: Any, busy_timeout_ms: int) -> None:
    """`PRAGMA journal_mode=WAL`, tried again for up to the busy timeout while the file is locked.

    Why not once: connections that switch a *new* database file to WAL at the same moment (the hub's processes on
    their first start) can get "database is locked" at once, without SQLite's busy handler - the conversion takes
    locks in a way SQLite does not wait for. Measured with four sqlite3 connections on a new file: 20 of 300
    trials, each with a 30 s timeout; CI saw it as one of four concurrent first starts failing
    (tests/scb/test_migrations.py). Once the file is in WAL mode the pragma takes no lock."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


def make_engine(url: str | URL, synchronous: str = "FULL", busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                max_size_mb: int = 0, read_only: bool = False, serialise_writers: bool = True) -> Engine:
    """Create an engine; for SQLite, create the file's directory and set the durability pragmas.

    `busy_timeout_ms`: how long a connection waits for another's lock; `max_size_mb` (0: none) caps the file, as
    a full disk would (both per connection: SQLite keeps neither in the file).

    `read_only` (for readers such as the dashboard): SQLite transactions begin deferred instead of `BEGIN
    IMMEDIATE`, and `PRAGMA query_only` refuses any write. Why: IMMEDIATE takes the write lock, so a reader that
    used it would hold every writer up for the length of its queries (and wait behind them); a deferred
    transaction in WAL mode reads one snapshot and never blocks the writer. query_only makes a bug in a reader
    an error instead of a change to the hub's records.

    PostgreSQL (`postgresql+psycopg://user@host/db`, password from `?password_file=PATH`, a 0600 file read at each
    connect): every transaction of a writing engine first takes the advisory lock `WRITER_LOCK_KEY` (the same
    one-writer-at-a-time as `BEGIN IMMEDIATE`; `serialise_writers=False` for a server that does its own
    locking, such as the fleet), waiting at most `busy_timeout_ms` (`lock_timeout`; past it the attempt fails
    with an OperationalError that the failure policy retries). A `read_only` engine takes no lock, runs every
    transaction REPEATABLE READ (one snapshot, as SQLite's deferred read) with `default_transaction_read_only`,
    so the server refuses its writes. Sessions run in UTC, and pooled connections are checked before use, so
    that a server restart costs one retried attempt, not a stream of errors."""
    if isinstance(url, str) and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database url {safe_url(url)!r} is not an SQLAlchemy URL "
                          "(e.g. postgresql+psycopg://scb@localhost/scb)") from None
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, busy_timeout_ms, read_only, serialise_writers)
    engine = create_engine(parsed, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions break SAVEPOINT/locking).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            _switch_to_wal(cur, busy_timeout_ms)
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cur.execute("PRAGMA foreign_keys=ON")
            if max_size_mb:
                page = cur.execute("PRAGMA page_size").fetchone()[0]
                cur.execute(f"PRAGMA max_page_count={max(1, max_size_mb * 1024 * 1024 // page)}")
            if read_only:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # IMMEDIATE: take the write lock at the start, so two processes never deadlock on lock upgrade;
            # a reader's deferred BEGIN takes no lock until it reads, and then only a snapshot.
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, busy_timeout_ms: int, read_only: bool, serialise_writers: bool) -> Engine:
    if url.drivername == "postgresql":  # no driver named: the one SCB installs, not SQLAlchemy's psycopg2 default
        url = url.set(drivername="postgresql+psycopg")
    if url.get_driver_name() != "psycopg":
        raise ConfigError(f"database url {safe_url(url)!r}: use the psycopg 3 driver, postgresql+psycopg://... "
                          "(the one SCB installs and tests)")
    url, password_file = _postgres_password_file(url)
    options = [f"-c lock_timeout={int(busy_timeout_ms)}", "-c TimeZone=UTC"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    connect_args: dict[str, Any] = {"options": " ".join(options), "connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(url, future=True, pool_pre_ping=True, connect_args=connect_args,
                           isolation_level="REPEATABLE READ" if read_only else "READ COMMITTED")

    if password_file is not None:
        from scb.files import read_secret_file

        @event.listens_for(engine, "do_connect")
        def _password(_dialect, _record, _cargs, cparams) -> None:  # type: ignore[no-untyped-def]
            # read at each connect: a rotated password takes effect without a restart, and it never sits in a URL
            cparams["password"] = read_secret_file(password_file, "database password")

    if not read_only and serialise_writers:

        @event.listens_for(engine, "begin")
        def _writer_lock(conn) -> None:  # type: ignore[no-untyped-def]
            # released by the transaction's commit or rollback (also when the connection dies with its process)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


def load_json_value(session: Session, model: type, key: str) -> dict | None:
    """The JSON object stored under `key` in a key/value table (columns `key`, `value_json`); None if absent
    or unreadable (such state is a cache or a checkpoint: a component starts fresh rather than fail)."""
    row = session.get(model, key)
    if row is None:
        return None
    try:
        value = json.loads(row.value_json)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def save_json_value(session: Session, model: type, key: str, value: dict) -> None:
    """Store `value` under `key` (in the caller's transaction); unchanged values are not rewritten."""
    text = json.dumps(value, sort_keys=True)
    row = session.get(model, key)
    if row is None:
        session.add(model(key=key, value_json=text))
    elif row.value_json != text:
        row.value_json = text


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: newest) with Alembic; idempotent, safe for concurrent starts.

    See scb/migrate.py: a schema change is a new revision in scb/migrations/versions, never `create_all` (a
    table created outside the migrations would make the next revision that creates it fail in the field).
    """
    from scb.migrate import upgrade as _upgrade

    _upgrade(engine_or_url, revision)


def init_db(config: "Config") -> Engine:
    """The configured database's engine, migrated to the newest schema: what every process calls at start."""
    engine = make_engine(config.database_url, config.sqlite_synchronous, config.sqlite_busy_timeout_ms,
                         config.sqlite_max_size_mb)
    try:
        upgrade(engine)
    except BaseException:  # a database locked, full or failing at start: the `scb` command reports it in one line
        engine.dispose()
        raise
    return engine


def open_database(config: "Config") -> sessionmaker[Session]:
    """`init_db` plus a session factory, for processes that use only the ORM."""
    return make_sessionmaker(init_db(config))


def database_exists(config: "Config") -> bool:
    """False only for a SQLite file that is not there yet (a server database is taken to exist)."""
    url = config.database_url
    return not (url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).expanduser().exists())


def open_existing(config: "Config") -> sessionmaker[Session] | None:
    """The hub's session factory if this machine has a hub database, else None.

    Why not simply open it: `scb verify`, `scb mam fetch` and `scb status` also run on machines that are not a
    hub (an auditor's laptop); opening the configured SQLite URL there would create an empty database, and the
    commands would report "no such reading" instead of working from their flags alone.
    """
    # at the newest schema already (the usual case) `upgrade` finds so with one SELECT and imports no Alembic
    # (0.3 s of `scb verify`; scb.migrate.at_head)
    return open_database(config) if database_exists(config) else None
