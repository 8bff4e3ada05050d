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

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


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
