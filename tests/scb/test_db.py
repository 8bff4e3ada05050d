"""scb.db on both backends: the SQLite knobs of [database] reach every connection; on SQLite and PostgreSQL alike
writers take turns, a read-only engine cannot write and reads one snapshot; PostgreSQL's password stays in a file.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from scb.config import Config, load_config
from scb.db import init_db, make_engine, safe_url
from scb.errors import ConfigError, SecretFileError
from scb.loop import is_transient
from tests.conftest import errors_at_once
from tests.services.postgres import PostgresServer, backend, database_name


def test_busy_timeout_and_size_cap_from_the_configuration(tmp_path: Path) -> None:
    config = load_config(environ={"SCB_DATA_DIR": str(tmp_path), "SCB_DATABASE__BUSY_TIMEOUT_S": "0.25",
                                  "SCB_DATABASE__MAX_SIZE_MB": "1"})
    engine = make_engine(config.database_url, config.sqlite_synchronous, config.sqlite_busy_timeout_ms,
                         config.sqlite_max_size_mb)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 250
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: durability is never traded
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10_000  # fewer checkpoints only
            page = conn.execute(text("PRAGMA page_size")).scalar()
            assert conn.execute(text("PRAGMA max_page_count")).scalar() == 1024 * 1024 // page
        with pytest.raises(OperationalError, match="full") as full:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE ballast (b BLOB)"))
                for _ in range(64):  # 2 MiB into a 1 MiB database
                    conn.execute(text("INSERT INTO ballast VALUES (zeroblob(32768))"))
        assert is_transient(full.value)  # the failure policy retries a full database in place
    finally:
        engine.dispose()


@pytest.mark.parametrize(("key", "value"), [("BUSY_TIMEOUT_S", "0"), ("BUSY_TIMEOUT_S", "true"),
                                            ("MAX_SIZE_MB", "-1"), ("MAX_SIZE_MB", "1.5")])
def test_bad_knobs_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    config = load_config(environ={"SCB_DATA_DIR": str(tmp_path), f"SCB_DATABASE__{key}": value})
    with pytest.raises(ConfigError, match=f"database.{key.lower()}"):
        config.sqlite_busy_timeout_ms if key == "BUSY_TIMEOUT_S" else config.sqlite_max_size_mb  # noqa: B018


def _table(url: str) -> Engine:
    engine = make_engine(url, busy_timeout_ms=200)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    return engine


def test_writers_take_turns_and_a_reader_never_waits(database_url: str) -> None:
    """One writer at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory writer lock): a second writer waits
    its busy timeout and fails with a transient error, while a read-only engine reads the last committed state."""
    first = _table(database_url)
    second = make_engine(database_url, busy_timeout_ms=200)
    reader = make_engine(database_url, busy_timeout_ms=200, read_only=True)
    try:
        with first.begin() as holder:
            holder.execute(text("INSERT INTO t VALUES (2)"))
            with pytest.raises(OperationalError) as waited:
                with second.begin() as conn:
                    conn.execute(text("SELECT count(*) FROM t")).scalar()  # even a writer engine's read waits
            assert is_transient(waited.value)
            with reader.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1  # not the uncommitted row
        with second.begin() as conn:  # the turn has passed
            conn.execute(text("INSERT INTO t VALUES (3)"))
        with reader.connect() as conn:
            assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == [1, 2, 3]
    finally:
        for engine in (first, second, reader):
            engine.dispose()


def test_a_read_only_engine_cannot_write(database_url: str) -> None:
    """The dashboard's guarantee: SQLite `PRAGMA query_only`, PostgreSQL `default_transaction_read_only`."""
    writer = _table(database_url)
    reader = make_engine(database_url, read_only=True)
    try:
        for statement in ("INSERT INTO t VALUES (9)", "UPDATE t SET n = 9", "DELETE FROM t", "CREATE TABLE u (n INTEGER)"):
            with pytest.raises(DBAPIError, match="read-only|readonly") as refused:
                with reader.begin() as conn:
                    conn.execute(text(statement))
            if backend(database_url) == "postgresql":
                assert type(refused.value.orig).__name__ == "ReadOnlySqlTransaction"
        with writer.connect() as conn:
            assert list(conn.execute(text("SELECT n FROM t")).scalars()) == [1]
    finally:
        writer.dispose()
        reader.dispose()


def test_a_read_only_transaction_reads_one_snapshot(database_url: str) -> None:
    """A dashboard page is computed from one state of the database, even while the hub commits meanwhile."""
    writer = _table(database_url)
    reader = make_engine(database_url, read_only=True)
    try:
        with reader.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
            with writer.begin() as w:
                w.execute(text("INSERT INTO t VALUES (2)"))
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
        with reader.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    finally:
        writer.dispose()
        reader.dispose()


# ---- PostgreSQL only: the password file, URLs in messages, the driver ----------------------------------------


@pytest.fixture
def hub_role(postgres_server: PostgresServer, tmp_path: Path) -> tuple[str, Path]:
    """A login role `hub_<n>` with a password, owning a fresh database; (its URL without password, password file)."""
    name = f"hub_{os.urandom(4).hex()}"
    password = "correct horse:battery@staple/%"  # characters a URL would have to escape
    postgres_server.create_role(name, password)
    url = postgres_server.create_database(owner=name)
    secret = tmp_path / "db.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return postgres_server.url(database_name(url), user=name), secret


def test_the_password_comes_from_a_0600_file_and_never_shows(hub_role: tuple[str, Path], tmp_path: Path) -> None:
    url, secret = hub_role
    config = Config(data={"hub": {"data_dir": str(tmp_path)},
                          "database": {"url": url, "password_file": str(secret)}})
    password = secret.read_text().strip()
    assert password not in config.database_url
    engine = init_db(config)  # connects with the file's password, migrates the empty database
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == url.split("://")[1].split("@")[0]
        assert password not in repr(engine.url) and password not in str(engine.url)
    finally:
        engine.dispose()
    # without the file the role is refused (the server really checks the password) ...
    bare = make_engine(url)
    try:
        with pytest.raises(OperationalError, match="password"):
            bare.connect()
    finally:
        bare.dispose()
    # ... and a file others can read is refused before any connection is tried
    secret.chmod(0o644)
    loose = make_engine(config.database_url)
    try:
        with pytest.raises(SecretFileError, match="chmod 600"):
            loose.connect()
    finally:
        loose.dispose()


def test_a_password_in_the_url_beside_a_file_is_refused(hub_role: tuple[str, Path], tmp_path: Path) -> None:
    url, secret = hub_role
    with_password = url.replace("@", ":visible@", 1)
    config = Config(data={"hub": {"data_dir": str(tmp_path)},
                          "database": {"url": with_password, "password_file": str(secret)}})
    with pytest.raises(ConfigError, match="both a password and a password file"):
        make_engine(config.database_url)


@pytest.mark.parametrize("url", ["", "sqlite:////tmp/scb.sqlite3"])
def test_a_password_file_without_postgresql_is_refused(url: str, tmp_path: Path) -> None:
    config = Config(data={"hub": {"data_dir": str(tmp_path)},
                          "database": {"url": url, "password_file": str(tmp_path / "pw")}})
    with pytest.raises(ConfigError, match="password_file is for a PostgreSQL"):
        config.database_url  # noqa: B018


def test_urls_in_messages_hide_the_password() -> None:
    shown = safe_url("postgresql+psycopg://hub:s3cret@db.example:5432/scb")
    assert "s3cret" not in shown and "hub" in shown and "db.example:5432/scb" in shown
    assert "s3cret" not in safe_url("postgresql+psycopg://hub:s3cret@[bad")
    assert safe_url("sqlite:////var/lib/scb/scb.sqlite3") == "sqlite:////var/lib/scb/scb.sqlite3"


def test_postgresql_urls_use_psycopg_3(postgresql_url: str) -> None:
    plain = make_engine(postgresql_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert plain.dialect.driver == "psycopg"
        with plain.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        plain.dispose()
    with pytest.raises(ConfigError, match="psycopg 3"):
        make_engine(postgresql_url.replace("postgresql+psycopg://", "postgresql+psycopg2://"))
    with pytest.raises(ConfigError, match="not an SQLAlchemy URL"):
        make_engine("no url at all")


def test_postgresql_sessions_run_in_utc_with_the_busy_timeout_as_lock_timeout(postgresql_url: str) -> None:
    engine = make_engine(postgresql_url, busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "1234ms"
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
    finally:
        engine.dispose()


def test_the_test_server_is_private_and_unprivileged(postgres_server: PostgresServer) -> None:
    """tests/services/postgres.py: its own data directory in a temporary directory, owned by (and the server run
    as) a user other than root, since PostgreSQL refuses root and the suite runs as root in CI."""
    data_dir = Path(postgres_server.psql("SHOW data_directory")[0][0])
    import tempfile

    assert data_dir == postgres_server.data_dir
    assert any(data_dir.is_relative_to(base) for base in (Path(tempfile.gettempdir()).resolve(), Path("/tmp")))
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid != 0 and data_dir.stat().st_uid != 0 or os.geteuid() != 0


def test_the_writer_lock_dies_with_a_killed_process(database_url: str, tmp_path: Path) -> None:
    """kill -9 of a process in the middle of a write transaction: its lock (SQLite's write lock, PostgreSQL's
    advisory lock) is gone with it, and its uncommitted row too; the next writer goes ahead."""
    import signal
    import subprocess
    import sys
    import time

    engine = _table(database_url)
    flag = tmp_path / "holding"
    code = ("import sys, time; from pathlib import Path; from sqlalchemy import text; from scb.db import make_engine\n"
            "e = make_engine(sys.argv[1])\n"
            "with e.begin() as c:\n"
            "    c.execute(text('INSERT INTO t VALUES (7)'))\n"
            "    Path(sys.argv[2]).write_text('x')\n"
            "    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, database_url, str(flag)])
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not start its write"
            time.sleep(0.02)
        with pytest.raises(OperationalError):  # held: the busy timeout (200 ms) passes
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (8)"))
        holder.send_signal(signal.SIGKILL)
        holder.wait(60)
        waiting = make_engine(database_url, busy_timeout_ms=60_000)  # a generous ceiling; returns once free
        try:
            with waiting.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (9)"))
            with waiting.connect() as conn:
                assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == [1, 9]
        finally:
            waiting.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(60)
        engine.dispose()


def test_connections_switching_a_new_file_to_wal_at_once_all_succeed(tmp_path: Path) -> None:
    """The hub's processes on their first start open a new database at the same moment: each must get a WAL
    connection, none "database is locked" (sqlite3 alone failed 20 of 300 such trials of four connections)."""
    import threading

    failures: list[BaseException] = []
    for trial in range(150):
        url = f"sqlite:///{tmp_path / f'new{trial}.sqlite3'}"
        barrier = threading.Barrier(4)

        def first_start() -> None:
            engine = make_engine(url)
            try:
                barrier.wait()  # engines made: their first connections open together
                with engine.connect() as conn:
                    assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            finally:
                engine.dispose()

        failures += errors_at_once(first_start)
    assert failures == []
