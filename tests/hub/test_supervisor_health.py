"""The supervisor sees more than exits: crash loops are marked failing and retried slowly, a process (or one of
its loops) that stops beating is marked hung and restarted. Real child processes; limits follow progress."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import hub.supervisor as supervisor_module
from hub.processes import FAILING, HUNG, RUNNING, Child, process_status
from hub.settings import RunSettings
from hub.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]


def child(tmp_path: Path, name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code], tmp_path / "logs" / f"{name}.log",
                 env={"PYTHONPATH": str(REPO)})


def until(what: str, check: Callable[[], bool], sup: Supervisor, patience_s: float = 60.0) -> None:
    """Tick until `check()`; fail only after `patience_s` without it (a busy machine is slow, not wrong)."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        sup.tick()
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"no {what} within {patience_s:.0f} s")


def test_crash_loop_is_marked_failing_and_retried_slowly(tmp_path: Path) -> None:
    settings = RunSettings(heartbeat_timeout_s=600, crash_loop_exits=3, crash_loop_window_s=120, failing_retry_s=3,
                           fork_processes=False)
    crasher = child(tmp_path, "crasher", "import sys; sys.exit(4)")
    crasher.beats = False
    sup = Supervisor([crasher], settings, tmp_path)
    sup.start_all(pause_s=0)
    until("failing state", lambda: crasher.state == FAILING, sup)
    assert crasher.last_exit_code == 4 and crasher.restarts == 3
    row = {p["name"]: p for p in process_status(tmp_path)}["crasher"]
    assert row["state"] == FAILING and "exited 3 times" in row["note"]
    # still retried, but only after failing_retry_s
    marked = time.monotonic()
    until("a slow retry", lambda: crasher.restarts == 4, sup)
    assert time.monotonic() - marked >= settings.failing_retry_s - 0.5
    sup.stop_all()


def test_a_process_that_stops_beating_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "HEARTBEAT_CHECK_S", 0.2)
    monkeypatch.setattr(supervisor_module, "HUNG_KILL_GRACE_S", 1.0)
    settings = RunSettings(heartbeat_timeout_s=2, crash_loop_exits=5, crash_loop_window_s=60, failing_retry_s=60,
                           fork_processes=False)
    # beats once, then hangs, ignoring SIGTERM: only SIGKILL ends it
    code = (f"import signal, time; from pathlib import Path; from scb.loop import Heartbeat\n"
            f"signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"Heartbeat(Path({str(tmp_path)!r}), 'stuck').beat('work', force=True)\n"
            "time.sleep(3600)\n")
    stuck = child(tmp_path, "stuck", code)
    sup = Supervisor([stuck], settings, tmp_path)
    sup.start_all(pause_s=0)
    first = stuck.proc.pid  # type: ignore[union-attr]
    until("hung state", lambda: stuck.state == HUNG, sup)
    assert "stopped beating" in stuck.note
    until("a restart", lambda: stuck.proc is not None and stuck.proc.pid != first and stuck.running(), sup)
    assert stuck.hung_restarts == 1
    sup.stop_all()


def test_a_dead_worker_thread_is_seen_although_the_process_lives(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "HEARTBEAT_CHECK_S", 0.2)
    settings = RunSettings(heartbeat_timeout_s=2, crash_loop_exits=5, crash_loop_window_s=60, failing_retry_s=60,
                           fork_processes=False)
    # loop "api" keeps beating; loop "worker" beats once and its thread ends
    code = (f"import time; from pathlib import Path; from scb.loop import Heartbeat\n"
            f"hb = Heartbeat(Path({str(tmp_path)!r}), 'half', min_interval_s=0)\n"
            "hb.beat('worker')\n"
            "while True:\n    hb.beat('api'); time.sleep(0.2)\n")
    half = child(tmp_path, "half", code)
    sup = Supervisor([half], settings, tmp_path)
    sup.start_all(pause_s=0)
    until("hung state", lambda: half.state == HUNG, sup)
    assert "loop worker stopped beating" in half.note
    until("running again", lambda: half.running() and half.hung_restarts == 1, sup)
    sup.stop_all()


def test_a_healthy_process_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "HEARTBEAT_CHECK_S", 0.2)
    settings = RunSettings(heartbeat_timeout_s=2, crash_loop_exits=5, crash_loop_window_s=60, failing_retry_s=60,
                           fork_processes=False)
    code = (f"import time; from pathlib import Path; from scb.loop import Heartbeat\n"
            f"hb = Heartbeat(Path({str(tmp_path)!r}), 'fine', min_interval_s=0)\n"
            "while True:\n    hb.beat('work'); time.sleep(0.2)\n")
    fine = child(tmp_path, "fine", code)
    sup = Supervisor([fine], settings, tmp_path)
    sup.start_all(pause_s=0)
    end = time.monotonic() + 5  # more than twice the timeout
    while time.monotonic() < end:
        sup.tick()
        time.sleep(0.1)
    assert fine.state == RUNNING and fine.restarts == 0 and fine.hung_restarts == 0
    row = {p["name"]: p for p in process_status(tmp_path)}["fine"]
    assert row["running"] and row["heartbeat_age_s"] < 2 and "work" in row["loops"]
    sup.stop_all()
