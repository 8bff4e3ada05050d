"""The failure policy (scb.loop): transient errors back off in place, anything else ends the process."""
from __future__ import annotations

import errno
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from scb.errors import ConfigError, DataError, NodeRefused, NodeUnavailable
from scb.loop import Guard, Heartbeat, is_transient, read_heartbeats
from scb.retry import Backoff


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
