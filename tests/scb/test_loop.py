"""The failure policy (scb.loop): transient errors back off in place, anything else ends the process."""
from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from scb.errors import ConfigError, DataError, NodeRefused, NodeUnavailable
from scb.loop import Guard, Heartbeat, is_transient, read_heartbeats
from scb.db import make_engine
from scb.retry import Backoff
from tests.services.postgres import PostgresServer


def test_what_is_transient() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(OperationalError) as locked:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
    assert is_transient(locked.value)
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(NodeUnavailable("down"))
    assert is_transient(NodeRefused("invalid transaction"))
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(OSError(errno.ENOENT, "No such file"))
    assert not is_transient(DataError("bad row"))
    assert not is_transient(ConfigError("bad setting"))
    assert not is_transient(KeyError("bug"))


class Steps:
    def __init__(self, outcomes: list[BaseException | None], stop: threading.Event) -> None:
        self.outcomes = outcomes
        self.stop = stop
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if not self.outcomes:
            self.stop.set()
        if outcome is not None:
            raise outcome
        return 0.0


def test_transient_errors_back_off_and_clear(tmp_path: Path) -> None:
    stop = threading.Event()
    hb = Heartbeat(tmp_path, "proc", min_interval_s=0)
    guard = Guard("work", hb, interval_s=0, backoff=Backoff(0.0, 0.0),
                  on_fatal=lambda name, exc: pytest.fail(f"fatal {exc!r}"))
    steps = Steps([sqlite3.OperationalError("database is locked"), NodeUnavailable("node down"), None], stop)
    errors_seen: list[str | None] = []
    original = hb.beat

    def spy(loop: str, **kw: object) -> None:
        original(loop, **kw)  # type: ignore[arg-type]
        errors_seen.append(hb.loops[loop].error)

    hb.beat = spy  # type: ignore[method-assign]
    guard.run(steps, stop)
    assert steps.calls == 3
    assert "OperationalError: database is locked" in errors_seen
    assert "NodeUnavailable: node down" in errors_seen
    beat = read_heartbeats(tmp_path)["proc"]
    assert beat["loops"]["work"]["error"] is None and beat["loops"]["work"]["failures"] == 0


def test_unexpected_error_goes_to_on_fatal_and_ends_the_loop(tmp_path: Path) -> None:
    stop = threading.Event()
    fatal: list[tuple[str, BaseException]] = []
    guard = Guard("work", Heartbeat(tmp_path, "proc", min_interval_s=0), interval_s=0,
                  on_fatal=lambda name, exc: fatal.append((name, exc)))
    steps = Steps([KeyError("bug"), None, None], stop)
    guard.run(steps, stop)
    assert steps.calls == 1 and [(n, type(e)) for n, e in fatal] == [("work", KeyError)]
    beat = json.loads((tmp_path / "run" / "heartbeat" / "proc.json").read_text())
    assert beat["loops"]["work"]["error"] == "KeyError: 'bug'"


def test_fatal_exits_the_process_with_70(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import threading; from pathlib import Path; from scb.loop import Guard, Heartbeat\n"
            f"g = Guard('w', Heartbeat(Path({str(tmp_path)!r}), 'p'), interval_s=0)\n"
            "def step(): raise RuntimeError('boom')\n"
            "t = threading.Thread(target=g.run, args=(step, threading.Event())); t.start(); t.join()\n"
            "import time; time.sleep(5); print('still alive')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70, proc.stderr
    assert "still alive" not in proc.stdout
    assert "RuntimeError: boom" in proc.stderr


def test_heartbeat_writes_are_throttled(tmp_path: Path) -> None:
    now = [1000.0]
    hb = Heartbeat(tmp_path, "proc", min_interval_s=10, clock=lambda: now[0])
    hb.beat("a")
    first = read_heartbeats(tmp_path)["proc"]["beat"]
    now[0] += 3
    hb.beat("a")
    assert read_heartbeats(tmp_path)["proc"]["beat"] == first  # not rewritten within 10 s
    hb.beat("a", error="x")  # a change of state is written at once
    assert read_heartbeats(tmp_path)["proc"]["loops"]["a"]["error"] == "x"
    now[0] += 11
    hb.beat("a", ok=True)
    assert read_heartbeats(tmp_path)["proc"]["beat"] == 1014.0


def test_systemd_watchdog_is_fed_only_while_every_loop_beats(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    address = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # 10 s
    now = [1000.0]
    hb = Heartbeat(tmp_path, "proc", min_interval_s=0, clock=lambda: now[0])
    hb.beat("a")
    hb.beat("b")
    assert server.recv(64) == b"WATCHDOG=1"
    assert server.recv(64) == b"WATCHDOG=1"
    now[0] += 11  # loop "b" falls silent for longer than the watchdog's limit; "a" keeps beating
    hb.beat("a")
    server.settimeout(0.3)
    with pytest.raises(TimeoutError):
        server.recv(64)
    server.close()


# ---- a real database in trouble: the loop retries in place and resumes (SQLite and PostgreSQL) ----------------

#: A ceiling for waits that follow progress (a loaded 2-core CI machine), not a timing expectation.
PROGRESS_CEILING_S = 120.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PROGRESS_CEILING_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Writer:
    """A loop step that inserts one row per call, as the hub's loops do, and counts what it stored."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, busy_timeout_ms=100)
        with self.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))
        self.stored = 0
        self.errors: list[BaseException] = []

    def __call__(self) -> float:
        try:
            with self.engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
        except BaseException as exc:
            self.errors.append(exc)
            raise
        self.stored += 1
        return 0.01


def _guarded(writer: Writer, tmp_path: Path) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    stop, fatal = threading.Event(), []
    guard = Guard("writer", Heartbeat(tmp_path, "proc", min_interval_s=0), interval_s=0.01,
                  backoff=Backoff(0.05, 0.2), on_fatal=lambda name, exc: fatal.append(exc))
    thread = threading.Thread(target=guard.run, args=(writer, stop), daemon=True)
    thread.start()
    return thread, stop, fatal


def test_a_database_locked_by_another_writer_is_retried_in_place(database_url: str, tmp_path: Path) -> None:
    writer = Writer(database_url)
    other = make_engine(database_url)
    thread, stop, fatal = _guarded(writer, tmp_path)
    try:
        _wait_for(lambda: writer.stored > 0, "a first row")
        with other.begin() as conn:  # another process holds the write lock beyond the busy timeout
            conn.execute(text("INSERT INTO t VALUES (2)"))
            _wait_for(lambda: len(writer.errors) >= 2, "the loop to meet the lock twice")
            beat = read_heartbeats(tmp_path)["proc"]["loops"]["writer"]
            assert beat["error"] and "OperationalError" in beat["error"] and beat["failures"] >= 1
        stored = writer.stored
        _wait_for(lambda: writer.stored > stored, "the loop to resume")
        assert all(is_transient(e) for e in writer.errors) and fatal == []
    finally:
        stop.set()
        thread.join(PROGRESS_CEILING_S)
        writer.engine.dispose()
        other.dispose()


def test_a_postgresql_restart_is_retried_in_place(postgres_server: PostgresServer, postgresql_url: str,
                                                  tmp_path: Path) -> None:
    """The server goes down (connections refused, sessions killed) and comes back: no exit, and writing resumes
    on the same engine (its pool's dead connections are replaced)."""
    writer = Writer(postgresql_url)
    thread, stop, fatal = _guarded(writer, tmp_path)
    try:
        _wait_for(lambda: writer.stored > 0, "a first row")
        postgres_server.stop()
        errors = len(writer.errors)
        _wait_for(lambda: len(writer.errors) > errors + 1, "the loop to meet the stopped server")
        assert "OperationalError" in (read_heartbeats(tmp_path)["proc"]["loops"]["writer"]["error"] or "")
        postgres_server.start()
        stored = writer.stored
        _wait_for(lambda: writer.stored > stored + 2, "the loop to resume after the restart")
        assert fatal == [] and all(is_transient(e) for e in writer.errors)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        stop.set()
        thread.join(PROGRESS_CEILING_S)
        writer.engine.dispose()


def test_postgresql_errors_that_are_transient(postgresql_url: str) -> None:
    """A deadlock and a serialization failure from the real server are retried; a refused write is a bug."""
    import psycopg

    engine = make_engine(postgresql_url, serialise_writers=False)  # a deadlock needs two writers at once
    reader = make_engine(postgresql_url, read_only=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE d (id INTEGER PRIMARY KEY, n INTEGER)"))
            conn.execute(text("INSERT INTO d VALUES (1, 0), (2, 0)"))
        a, b = engine.connect(), engine.connect()
        a.execute(text("UPDATE d SET n = 1 WHERE id = 1"))
        b.execute(text("UPDATE d SET n = 2 WHERE id = 2"))
        caught: list[BaseException] = []

        def cross() -> None:
            try:
                a.execute(text("UPDATE d SET n = 1 WHERE id = 2"))
            except BaseException as exc:  # noqa: BLE001 - collected
                caught.append(exc)

        t = threading.Thread(target=cross)
        t.start()
        try:
            b.execute(text("UPDATE d SET n = 2 WHERE id = 1"))
        except BaseException as exc:  # noqa: BLE001 - one of the two is chosen as the victim
            caught.append(exc)
        t.join(PROGRESS_CEILING_S)
        a.rollback(), b.rollback(), a.close(), b.close()
        assert len(caught) == 1 and isinstance(caught[0], OperationalError)
        assert isinstance(caught[0].orig, psycopg.errors.DeadlockDetected) and is_transient(caught[0])
        assert is_transient(caught[0].orig)  # unwrapped, as psycopg raises it
        assert is_transient(psycopg.errors.SerializationFailure("could not serialize access"))
        with pytest.raises(DBAPIError) as refused:
            with reader.begin() as conn:
                conn.execute(text("DELETE FROM d"))
        assert not is_transient(refused.value)  # a reader that writes is a bug: the process exits and restarts
    finally:
        engine.dispose()
        reader.dispose()
