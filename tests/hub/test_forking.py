"""hub.forking: the supervisor's forked children behave as exec'd ones do (exit codes, signals, logs, sessions)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.forking import fork_process
from hub.processes import Child


def _fork(tmp_path: Path, target, name: str = "probe"):  # type: ignore[no-untyped-def]
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed by the caller's fixture scope
    return fork_process(name, target, log.fileno(), {"SCB_FORK_TEST": "yes"}), tmp_path / f"{name}.log", log


def test_child_runs_target_with_its_environment_and_output_in_the_log(tmp_path: Path) -> None:
    def target() -> int:
        print("to stdout", os.environ.get("SCB_FORK_TEST"))
        print("to stderr", os.getpid() == os.getsid(0), file=sys.stderr)
        return 7

    proc, log_path, log = _fork(tmp_path, target)
    assert proc.wait(timeout=10) == 7
    log.close()
    text = log_path.read_text()
    assert "to stdout yes" in text
    assert "to stderr True" in text  # its own session: the supervisor can kill its group
    assert "SCB_FORK_TEST" not in os.environ  # the environment was the child's only


def test_sigterm_stops_a_child_although_the_supervisor_handles_sigterm(tmp_path: Path) -> None:
    flagged: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: flagged.append(signum))
    try:
        proc, _, log = _fork(tmp_path, lambda: time.sleep(60) or 0)
        time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM  # as subprocess.Popen reports a signal
        log.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert flagged == []


def test_wait_times_out_like_popen_and_an_exception_exits_3_with_its_traceback(tmp_path: Path) -> None:
    proc, _, log = _fork(tmp_path, lambda: time.sleep(60) or 0, "sleeper")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    log.close()

    def broken() -> int:
        raise RuntimeError("boom in the child")

    proc, log_path, log = _fork(tmp_path, broken, "broken")
    assert proc.wait(timeout=10) == 3
    log.close()
    assert "RuntimeError: boom in the child" in log_path.read_text()


def test_a_child_with_fork_args_runs_the_scb_command_in_a_fork(tmp_path: Path) -> None:
    child = Child("version", ["/nonexistent/never-exec'd"], tmp_path / "logs" / "version.log",
                  fork_args=["--version"])
    child.start()
    assert child.proc is not None
    child.wait_or_kill(time.monotonic() + 10)
    assert child.proc.returncode == 0  # argparse's --version exits 0 through SystemExit
    assert (tmp_path / "logs" / "version.log").read_text().startswith("scb ")

    child = Child("unknown", ["/nonexistent"], tmp_path / "logs" / "unknown.log", fork_args=["no-such-command"])
    child.start()
    child.wait_or_kill(time.monotonic() + 10)
    assert child.proc is not None and child.proc.returncode == 2
    assert "invalid choice" in (tmp_path / "logs" / "unknown.log").read_text()


def test_the_supervisor_restarts_a_forked_child_alone_as_a_new_fork(tmp_path: Path) -> None:
    from hub.processes import FAILING
    from hub.settings import RunSettings
    from hub.supervisor import Supervisor

    settings = RunSettings(heartbeat_timeout_s=600, crash_loop_exits=3, crash_loop_window_s=120, failing_retry_s=60,
                           fork_processes=True)
    crasher = Child("crasher", ["/nonexistent"], tmp_path / "logs" / "crasher.log", beats=False,
                    fork_args=["no-such-command"])
    sleeper = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "logs" / "s.log",
                    beats=False)
    sup = Supervisor([crasher, sleeper], settings, tmp_path)
    sup.start_all(pause_s=0)
    pids = set()
    sleeper_pid = sleeper.proc.pid  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while crasher.state != FAILING and time.monotonic() < deadline:
        sup.tick()
        pids.add(crasher.proc.pid)  # type: ignore[union-attr]
        time.sleep(0.1)
    try:
        assert crasher.state == FAILING and crasher.last_exit_code == 2 and crasher.restarts == 3
        assert len(pids) == 3  # each restart a fork of its own
        assert sleeper.running() and sleeper.proc.pid == sleeper_pid  # type: ignore[union-attr]
    finally:
        sup.stop_all()


def test_a_forked_child_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (f"import os, time\nfrom hub.forking import fork_process\n"
            f"def child():\n    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n"
            f"fork_process('orphan', child, 2, {{}})\ntime.sleep(120)\n")
    supervisor = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        os.kill(child, 0)  # it runs
        supervisor.kill()  # SIGKILL: the supervisor gets no chance to stop it
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the forked child outlived its supervisor")
    finally:
        supervisor.kill()


def test_every_run_command_has_an_entry_module_and_preloading_them_all_keeps_forking_safe() -> None:
    from hub.forking import ENTRY_MODULES
    from hub.processes import RUN_COMMANDS

    assert set(ENTRY_MODULES) == set(RUN_COMMANDS)  # a process without one would share nothing it imports
    # in a fresh interpreter, as `scb run` does it: no import may start a thread (forking would be refused), and
    # none loads web3 or eth_account (with eth_utils and pydantic: about 50 MB that every process would share)
    code = ("import sys, threading\nfrom hub.forking import preload\n"
            f"ok = preload({list(RUN_COMMANDS)!r}, 'sqlite:///x.sqlite3')\n"
            "heavy = {'web3', 'eth_account', 'eth_utils', 'pydantic'} & {m.split('.')[0] for m in sys.modules}\n"
            "print(ok, threading.active_count(), sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "1", "[]"], out.stdout + out.stderr
