"""The fleet's database: engine, migrations (fleet/migrations, Alembic), and the dialect-portable idempotent insert.

SQLite (the embedded default, a newcomer's first fleet) or PostgreSQL through psycopg 3 (a real fleet). Migrations
run in scb.migrate's migration transaction (one transaction, PostgreSQL advisory lock, SQLite's foreign keys
unenforced and checked) on the fleet's own revisions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, text
from sqlalchemy.orm import Session, sessionmaker

from scb.db import make_engine, make_sessionmaker
from scb.migrate import SchemaError, migration_transaction

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: the fleet's Alembic version table, not the hub's `alembic_version` (why: fleet/migrations/env.py)
VERSION_TABLE = "fleet_alembic_version"


def alembic_config() -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the fleet's database to `revision`; idempotent, safe for concurrent starts."""
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config()
    try:
        with migration_transaction(engine) as conn:  # the hub's: one transaction, lock, foreign keys on SQLite
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except CommandError as exc:
        raise SchemaError(f"fleet database migration failed: {exc} (was it migrated by a newer SCB?)") from None


def open_fleet_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """The fleet's engine, migrated, and its session factory. SQLite runs with synchronous=NORMAL: the fleet's
    rows are copies the hubs keep until acknowledged, and a batch lost in a power cut is sent again.

    PostgreSQL: without the hub's writer lock (`serialise_writers=False`). Why: the fleet's writes are idempotent
    inserts on unique keys (`insert_ignore`), correct under concurrency by themselves, and one lock would make its
    8 database threads (fleet.server) one writer. Everything else is the hub's engine (password file, psycopg 3,
    connect and lock timeouts, UTC); its default pool (5, overflowing to 15) serves those 8 threads without wait."""
    engine = make_engine(url, synchronous="NORMAL", serialise_writers=False)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine, make_sessionmaker(engine)


def insert_ignore(session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> int:
    """Insert `rows`, skipping those whose unique `keys` exist already; returns how many were inserted.

    Why ON CONFLICT DO NOTHING and not select-then-insert: two uploads of the same rows at once (a hub's retry
    racing its first try) must not fail on the unique key. Why one statement per table and batch: per-row
    statements are what makes a naive ingest slow (benchmarks/fleet_ingest.py measures both). On PostgreSQL the
    rows go as one array per column through `unnest` (a single short statement whatever the batch size; a
    multi-row VALUES list of thousands of placeholders costs more to build and parse than to insert). All `rows`
    have the same keys."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect
    pk = list(table.primary_key.columns)[0]
    if dialect.name == "postgresql":
        columns = list(rows[0])
        casts = ", ".join(f"CAST(:c{i} AS {table.c[name].type.compile(dialect=dialect)}[])"
                          for i, name in enumerate(columns))
        names = ", ".join(f'"{name}"' for name in columns)
        conflict = ", ".join(f'"{k}"' for k in keys)
        statement = text(f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({casts}) '
                         f'ON CONFLICT ({conflict}) DO NOTHING RETURNING "{pk.name}"')
        params = {f"c{i}": [row[name] for row in rows] for i, name in enumerate(columns)}
        return len(session.execute(statement, params).all())
    if dialect.name != "sqlite":  # pragma: no cover - the fleet supports these two
        raise SchemaError(f"the fleet supports SQLite and PostgreSQL, not {dialect.name}")
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table).on_conflict_do_nothing(index_elements=keys)
    return len(session.execute(stmt.returning(pk), rows).all())
