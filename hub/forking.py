"""Start SCB's own processes as forks of the supervisor, after it imported their code once (issue 16, "Memory").

Why: every process of the hub imports the same heavy libraries on its own (SQLAlchemy, aiohttp, PyOTA, and
before issue 16 web3 with eth_account: 40-75 MB of each process's resident memory), so the embedded default held
the same code six times. `scb run` imports the entry module of every process it will run (`preload`), freezes
the garbage collector's view of those objects, and then forks each process from that state: the children share
the imported code's pages copy-on-write with the supervisor and with each other, and a page is copied only when a
child writes to it.

What stays as it was: each process is still its own process, with its own pid, session (process group), log,
heartbeat and exit code; the supervisor restarts one that dies alone, forked again from the same, untouched state
(the supervisor runs none of the components' code itself), and stopped with SIGTERM if the supervisor dies (kill -9
included), so that none runs on unsupervised beside the processes of a restarted `scb run`. What changes: a process
restarted by the supervisor runs the code the supervisor imported when it started, so after an upgrade restart
`scb run` itself (systemd units, one process each, are not forked: docs/deployment.md).

Forking is safe only from a process with one thread (another thread could hold a lock the child then waits on
forever): `preload` refuses, and `scb run` starts every process as a fresh interpreter, if any import started a
thread. `[run] fork_processes = false` does the same on purpose.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

log = logging.getLogger("scb.run")

#: The module each `scb run` process spends its life in (its command's handler imports it when it starts): what
#: `preload` imports, beside the command's own CLI modules (hub.cli.COMMANDS).
ENTRY_MODULES = {
    "tangle-node": "mam_client.node.server",
    "energy-manager": "energy_manager.service",
    "mam-client": "mam_client.service",
    "settlement": "settlement.service",
    "dashboard": "dashboard.app",
    "demo-households": "settlement.households",
    "home-assistant": "home_assistant.bridge",
    "fleet-upload": "hub.fleet.upload",
}
#: How often ForkedProcess.wait looks whether the child exited (it cannot block with a timeout on waitpid).
_WAIT_POLL_S = 0.05
#: prctl(2) options: the calling thread's name (/proc/PID/comm, what `top` and `ps -o comm` show), and the signal
#: the process gets when its parent dies
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1


def preload(commands: Iterable[str], database_url: str | None = None) -> bool:
    """Import the modules of `commands` (hub.cli.COMMANDS and ENTRY_MODULES) and do the first-use work
    of their libraries (`_warm`), then freeze the garbage collector's generations so that collections in the
    children do not write to every imported object's header (which would copy the shared pages). True when forking
    is safe afterwards: the imports worked and started no thread."""
    from hub.cli import COMMANDS

    modules = [m for c in commands for m in (*COMMANDS.get(c, ()), ENTRY_MODULES.get(c)) if m is not None]
    try:
        for module in modules:
            importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken component fails in its own process, with its own message
        log.warning("could not import %s for sharing (%s: %s); every process starts its own interpreter",
                    module, type(exc).__name__, exc)
        return False
    if threading.active_count() != 1:
        log.warning("importing the processes' modules started a thread (%s); every process starts its own "
                    "interpreter", ", ".join(t.name for t in threading.enumerate()))
        return False
    _warm(database_url)
    gc.collect()
    gc.freeze()
    return True


def _warm(database_url: str | None) -> None:
    """What each process would otherwise do on its first query, done once here so that its objects are shared:
    configure the mappers of every model imported (SQLAlchemy builds them on first use, and changes every mapped
    class as it does) and import the database's dialect (create_engine imports it). Only memory depends on it: a
    failure here is the children's to report, on their first query, as it would be without forking."""
    if "sqlalchemy.orm" not in sys.modules:
        return
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
        if database_url:
            make_url(database_url).get_dialect()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("not warmed for sharing: %s: %s", type(exc).__name__, exc)


class ForkedProcess:
    """A forked child, with the part of subprocess.Popen's interface that hub.processes.Child uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone, with no status to read
                self.returncode = -1
                return self.returncode
            if pid != 0:
                self.returncode = os.waitstatus_to_exitcode(status)  # negative: killed by that signal, as Popen
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(_WAIT_POLL_S)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def fork_process(name: str, target: Callable[[], int], log_fd: int, env: dict[str, str]) -> ForkedProcess:
    """Fork a child that runs `target()` with stdout and stderr on `log_fd`, stdin on /dev/null, in a session of its
    own (so that the supervisor can kill its whole group, as with start_new_session), and exits with its result.

    The child resets what the supervisor set up for itself: its signal handlers (a forked child would otherwise
    keep the supervisor's SIGTERM handler, which only sets a flag in the supervisor's loop, and never stop), and
    it never returns into the supervisor's code: whatever happens, it ends in os._exit."""
    for stream in (sys.stdout, sys.stderr):  # or what is buffered in the supervisor is written again by the child
        stream.flush()
    supervisor = os.getpid()
    pid = os.fork()
    if pid != 0:
        return ForkedProcess(pid)
    code = 3
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # streams of its own on the new descriptors, as a fresh interpreter has (the inherited objects may not
        # write to descriptors 1 and 2 at all, as under a test runner's capture)
        sys.stdout, sys.stderr = (open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1,  # noqa
                                       closefd=False) for fd in (1, 2))
        os.environ.update(env)
        _set_name(f"scb-{name}")
        _stop_with(supervisor)
        code = int(target() or 0)
    except SystemExit as exc:  # argparse and sys.exit() in the child: its code, as a fresh interpreter's
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - the child must reach os._exit: returning would run the supervisor
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _prctl(option: int, value: int | bytes) -> bool:
    """prctl(2) through libc; False where there is none (not Linux, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stop_with(supervisor: int) -> None:
    """SIGTERM this child when the supervisor dies, however it dies (kill -9, the OOM killer): a process whose
    supervisor is gone would run on unsupervised, and the supervisor started again would start a second one
    beside it. If the supervisor died before this was set, the child stops at once."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


def _set_name(name: str) -> None:
    """Name the child in `top` and `ps -o comm` (every fork's command line is the supervisor's `scb run`)."""
    _prctl(_PR_SET_NAME, name.encode()[:15])  # where it fails, only the name in `top` is lost
