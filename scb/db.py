"""The project database: one SQLAlchemy engine shared by all processes of a hub.

SQLite (the default) runs in WAL mode with `synchronous=FULL`, so a committed row survives kill -9 and a power
cut, and readers never block the writer. Any SQLAlchemy URL (e.g. PostgreSQL for a fleet) works too.
Every table of every component hangs off the one `Base.metadata`; the schema is created and upgraded by the
Alembic migrations in `scb/migrations` (see docs/operations.md).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

if TYPE_CHECKING:
    from scb.config import Config


class Base(DeclarativeBase):
    """Declarative base of every SCB table."""


def make_engine(url: str, synchronous: str = "FULL") -> Engine:
    """Create an engine; for SQLite, create the file's directory and set the durability pragmas."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions break SAVEPOINT/locking).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # IMMEDIATE: take the write lock at the start, so two processes never deadlock on lock upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


#: Modules that define tables; imported before the schema is created so every table is on Base.metadata.
MODEL_MODULES = ("mam_client.models", "energy_manager.models", "settlement.models")


def load_models() -> None:
    import importlib

    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def create_schema(engine: Engine) -> None:
    """Bring the database schema up to date (every process calls this at start; it is idempotent)."""
    load_models()
    Base.metadata.create_all(engine)


def open_database(config: "Config") -> sessionmaker[Session]:
    """Engine + schema + session factory for the configured database."""
    engine = make_engine(config.database_url, config.sqlite_synchronous)
    create_schema(engine)
    return make_sessionmaker(engine)
