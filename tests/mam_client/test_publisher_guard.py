"""The publisher survives its database and does not survive its own bugs (scb.loop.Guard).

* the database is locked beyond the busy timeout (BEGIN EXCLUSIVE from another connection) while the publisher
  runs - at its start (preparing), and while the node holds a bundle the publisher has not recorded yet (the
  lost-answer case) - : it retries in place, and once the lock is gone every message is attached exactly once,
  no key index used twice;
* an unexpected error in the worker goes to on_fatal (in a real process: exit 70, with the API still up before).
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, select

from mam_client.fetch import fetch_chain
from mam_client.models import ATTACHED, Channel, OutboxMessage
from mam_client.publisher import LOOP_NAME
from scb.loop import EXIT_LOOP_FAILED, Heartbeat, read_heartbeats
from scb.retry import Backoff
from tests.conftest import free_port
from tests.mam_client.fakes import Hub, make_hub

#: Busy timeout of the publisher's connections in these tests (the hub uses 30 s); the lock is held longer.
BUSY_TIMEOUT_MS = 100
LOCK_HOLD_S = 0.6
#: No progress for this long fails a test; a slow machine is slow, a stuck publisher makes no progress at all.
STALL_S = 60.0


class RecordingHeartbeat(Heartbeat):
    """A heartbeat that keeps every error it was given (the file shows only the current one)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "mam-client", min_interval_s=0)
        self.errors: list[str] = []

    def beat(self, loop: str, **kwargs: object) -> None:  # type: ignore[override]
        if kwargs.get("error"):
            self.errors.append(str(kwargs["error"]))
        super().beat(loop, **kwargs)  # type: ignore[arg-type]


class Locker:
    """Another connection that takes the database's write lock (BEGIN EXCLUSIVE) for `hold_s` seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.threads: list[threading.Thread] = []
        self.taken = 0

    def lock_for(self, hold_s: float) -> None:
        """Returns once the lock is held; a thread releases it after `hold_s`."""
        held = threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(self.path, timeout=STALL_S, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                held.set()
                time.sleep(hold_s)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        self.threads.append(thread)
        assert held.wait(STALL_S), "could not take the lock"
        self.taken += 1


def wait_until(condition, what: str, progress=lambda: None) -> None:  # type: ignore[no-untyped-def]
    """Wait for `condition()`; fail only when `progress()` has not changed for STALL_S."""
    last, since = progress(), time.monotonic()
    while not condition():
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        assert time.monotonic() - since < STALL_S, f"no progress for {STALL_S:.0f} s waiting for {what}: {now}"
        time.sleep(0.02)


def attached_count(hub: Hub) -> int:
    """Read with a plain connection: a WAL reader is not blocked by the lock the test holds (the hub's sessions
    start with BEGIN IMMEDIATE, which would be)."""
    conn = sqlite3.connect(hub.db_path, timeout=STALL_S)
    try:
        return int(conn.execute("SELECT count(*) FROM mam_messages WHERE state = ?", (ATTACHED,)).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture()
def hub(tmp_path: Path) -> Hub:
    hub = make_hub(tmp_path, channels={"readings": {"mode": "public", "security": 1}}, poll_interval_s=0.01)

    @event.listens_for(hub.engine, "connect")
    def _short_busy_timeout(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    hub.engine.dispose()  # connections made before the listener would keep the 30 s timeout
    return hub


def test_a_locked_database_is_retried_in_place_and_nothing_is_attached_twice(hub: Hub) -> None:
    n = 40
    hub.enqueue("readings", n)
    locker = Locker(hub.db_path)
    # lock while the node holds the bundle and before the publisher records it (the lost-answer case)
    lock_at = {2, 3, 9, 17, 30}
    hub.tangle.on_attach = lambda call: locker.lock_for(LOCK_HOLD_S) if call in lock_at else None
    heartbeat = RecordingHeartbeat(hub.root)
    fatal: list[BaseException] = []
    stop = threading.Event()
    worker = threading.Thread(target=hub.publisher.run_forever, args=(stop, heartbeat),
                              kwargs={"on_fatal": lambda _n, exc: fatal.append(exc), "backoff": Backoff(0.05, 0.2)},
                              daemon=True)
    worker.start()
    try:
        locker.lock_for(LOCK_HOLD_S)  # also right at the start: ensure/prepare meet a locked database
        wait_until(lambda: attached_count(hub) == n or not worker.is_alive(), f"{n} messages attached",
                   progress=lambda: (attached_count(hub), len(heartbeat.errors)))
        assert worker.is_alive() and not fatal, fatal
    finally:
        stop.set()
        worker.join(STALL_S)
        for thread in locker.threads:
            thread.join(STALL_S)
    assert locker.taken == 1 + len(lock_at)
    locked = [e for e in heartbeat.errors if "database is locked" in e]
    assert len(locked) >= len(lock_at), heartbeat.errors  # the publisher did meet the lock, and survived it
    state = read_heartbeats(hub.root)["mam-client"]["loops"][LOOP_NAME]
    assert state["error"] is None and state["failures"] == 0  # healthy again

    with hub.factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        first_root = s.get(Channel, "readings").first_root
    assert [r.state for r in rows] == [ATTACHED] * n
    assert [r.key_index for r in rows] == list(range(n))  # no index signed twice, none skipped
    assert hub.tangle.attach_calls == n  # each message sent once (a lost answer is adopted, not re-sent)
    assert all(len(hub.tangle.by_address[r.address]) == 1 for r in rows)
    assert [m.message for m in fetch_chain(hub.tangle, first_root, "public", None)] == [r.message for r in rows]


def test_an_unexpected_error_goes_to_on_fatal(hub: Hub) -> None:
    hub.enqueue("readings", 2)

    def bug(_call: int) -> None:
        raise KeyError("a bug")

    hub.tangle.on_attach = bug
    heartbeat = RecordingHeartbeat(hub.root)
    fatal: list[tuple[str, BaseException]] = []
    stop = threading.Event()
    worker = threading.Thread(target=hub.publisher.run_forever, args=(stop, heartbeat),
                              kwargs={"on_fatal": lambda name, exc: fatal.append((name, exc))}, daemon=True)
    worker.start()
    worker.join(STALL_S)
    stop.set()
    assert not worker.is_alive()  # the loop ended after on_fatal (which, by default, exits the process)
    assert [(name, type(exc)) for name, exc in fatal] == [(LOOP_NAME, KeyError)]
    assert hub.tangle.attach_calls == 1  # not retried
    assert "KeyError" in read_heartbeats(hub.root)["mam-client"]["loops"][LOOP_NAME]["error"]


BUGGY_MAM_CLIENT = textwrap.dedent('''
    import sys
    from mam_client import service
    from mam_client.outbox import enqueue
    from scb.config import load_config
    from scb.db import open_database, transaction

    class Buggy:
        """A transport with a bug: what the Guard must not retry."""

        def attach(self, address, payload, tag):
            raise AttributeError("a bug in the transport")

        def find_bundles(self, address):
            return []

    service.make_transport = lambda iota: Buggy()
    config = load_config()
    with transaction(open_database(config)) as s:
        enqueue(s, "readings", "HELLO")
    sys.exit(service.run(config))
''')


def test_a_bug_in_the_worker_exits_the_mam_client_with_70(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env.update({"SCB_DATA_DIR": str(tmp_path), "SCB_MAM__API_PORT": str(free_port()),
                "SCB_MAM__CHANNELS__READINGS__MODE": "public", "SCB_MAM__CHANNELS__READINGS__SECURITY": "1",
                "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    # a hang guard, not a budget: the process exits within seconds of its first poll
    proc = subprocess.run([sys.executable, "-c", BUGGY_MAM_CLIENT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == EXIT_LOOP_FAILED, proc.stderr[-3000:]
    assert "exiting with 70" in proc.stderr and "AttributeError" in proc.stderr
    beat = read_heartbeats(tmp_path)["mam-client"]
    assert beat["process"] == "mam-client"
    assert "a bug in the transport" in beat["loops"][LOOP_NAME]["error"]
