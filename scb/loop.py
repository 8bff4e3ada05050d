"""The failure policy of every long-running loop, decided once (docs/architecture.md "Failure policy").

A hub runs unattended, so a loop may neither die while its process looks alive nor spin on an error:

* **Expected trouble is retried in place, with backoff**: a peer that is down (`TransportError`) or that
  refused (`Refused`: the loop records the reason and tries again on the slow end of the backoff), a database
  that is locked beyond its busy timeout, full or failing (`DatabaseUnavailable`, SQLAlchemy's, sqlite3's and
  psycopg's `OperationalError`: for PostgreSQL also a server restart, a serialization failure or a deadlock;
  `OSError` such as ENOSPC/EIO). Why in place: the cause is outside the process, a restart
  would not cure it, and a restart storm would only add load to the database that is already struggling.
  The error is shown in the loop's heartbeat (and so in `scb status` and on the dashboard) while it lasts.
* **Anything else is a bug or a state the code does not know** (including a `DataError` or `ConfigError` that
  no caller handled): the loop logs it with its traceback, and the process exits with `EXIT_LOOP_FAILED`, so
  that its supervisor (`scb run`, or systemd's `Restart=`) starts it again from the database, which is the
  durable queue. Why exit rather than carry on: in-memory state after an unknown error cannot be trusted,
  and every component already survives kill -9 at any moment, so a restart is the one recovery that is
  always safe.

Each loop also beats a `Heartbeat`: a small JSON file per process under `<data_dir>/run/heartbeat/`, written
from the loop's own thread, so a hung loop or a dead worker thread stops the beat even though the process still
answers signals. The supervisor (`scb run`) restarts a process whose beat is older than its timeout; under
systemd, the same beats feed its watchdog (`WatchdogSec=`).
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scb.errors import DatabaseUnavailable, Interrupted, Refused, TransportError
from scb.files import atomic_write
from scb.retry import Backoff, jittered

log = logging.getLogger("scb.loop")

#: The exit code of a process whose loop met an error it did not expect (BSD's EX_SOFTWARE).
EXIT_LOOP_FAILED = 70
#: Retry delays for expected trouble. Why these: a locked database usually clears in seconds, a node or a
#: chain that is down comes back in minutes; five minutes between tries bounds what a long outage costs.
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 300.0
#: Heartbeat files are rewritten at most this often. Why: an SD card wears with every write; a beat every
#: few seconds from every loop would be thousands of writes an hour for no gain.
BEAT_MIN_INTERVAL_S = 5.0
#: A loop that waits (its interval, or a backoff of minutes) still beats this often. Why: the supervisor takes a
#: stale beat for a hung loop; waiting is not hanging.
IDLE_BEAT_S = 10.0
_OS_TRANSIENT = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EAGAIN, errno.EBUSY, errno.EROFS}


def is_transient(exc: BaseException) -> bool:
    """True for the errors the policy retries in place (see the module docstring)."""
    if isinstance(exc, (TransportError, Refused, Interrupted)):
        return True
    # never imported here: a process that has not loaded SQLAlchemy (the tangle node, the supervisor) cannot be
    # handed one of its errors, and importing it on the first error would cost that process its memory (issue 16)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None:
        if isinstance(exc, sa_exc.OperationalError):
            return True
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    # PostgreSQL through psycopg 3 unwrapped (SQLAlchemy wraps the same as its OperationalError, above): server
    # down, restarting or refusing connections, a serialization failure, a deadlock, lock_timeout, a full disk.
    psycopg = sys.modules.get("psycopg")  # never imported here: a SQLite hub need not have it loaded
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return True
    return isinstance(exc, OSError) and exc.errno in _OS_TRANSIENT


def as_database_error(exc: BaseException) -> DatabaseUnavailable:
    """A database failure as the tree's `DatabaseUnavailable`, with the driver's one-line reason."""
    orig = getattr(exc, "orig", None) or exc
    return DatabaseUnavailable(f"database: {type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}")


def describe(exc: BaseException) -> str:
    """One line for logs, heartbeats and status: the error's class and message, never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def default_on_fatal(name: str, exc: BaseException) -> None:
    """Exit the whole process (from any thread), so the supervisor restarts it. Logs are flushed first."""
    log.critical("loop %s met an error it does not expect; exiting with %d so that it is restarted: %s", name,
                 EXIT_LOOP_FAILED, describe(exc))
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    sys.stderr.flush()
    os._exit(EXIT_LOOP_FAILED)


def fail_by_policy(name: str, exc: BaseException, backoff: Backoff, on_fatal: Callable[[str, BaseException], None],
                   *, heartbeat: Heartbeat | None = None, clock: Callable[[], float] = time.monotonic) -> float | None:
    """The policy for one failure of loop `name`: a transient error backs off (logged, shown in `heartbeat`) and
    the delay before the next try is returned; anything else is logged with its traceback and goes to `on_fatal`
    (None returned). `Guard` applies it to its step; a scheduler's own loop (settlement.service) to its pass."""
    if is_transient(exc):
        delay = backoff.fail(clock(), describe(exc))
        log.warning("%s: %s; retrying in %.1f s", name, describe(exc), delay)
        if heartbeat is not None:
            heartbeat.beat(name, error=describe(exc))
        return delay
    log.error("%s: unexpected error:\n%s", name, "".join(traceback.format_exception(exc)).rstrip())
    if heartbeat is not None:
        heartbeat.beat(name, error=describe(exc), force=True)
    on_fatal(name, exc)
    return None


# ---- heartbeats ------------------------------------------------------------------------------------------


def heartbeat_dir(data_dir: Path) -> Path:
    return data_dir / "run" / "heartbeat"


@dataclass
class LoopState:
    """What a heartbeat says of one loop."""

    beat: float = 0.0  # wall clock of the last beat (an iteration started or ended)
    ok_at: float | None = None  # wall clock of the last iteration without error
    failures: int = 0  # consecutive failed iterations
    error: str | None = None  # the current error, None while healthy
    error_since: float | None = None  # wall clock of the first failure of the current run of failures
    detail: dict[str, Any] = field(default_factory=dict)  # what the loop wants to show (e.g. node reachable)


class Heartbeat:
    """The heartbeat file of one process: `{process, pid, beat, loops: {name: LoopState}}`.

    Thread-safe; every loop of the process beats its own entry. `min_interval_s` throttles the writes.
    """

    def __init__(self, data_dir: Path | None, process: str, min_interval_s: float = BEAT_MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = heartbeat_dir(data_dir) / f"{process}.json" if data_dir is not None else None
        self.process = process
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.loops: dict[str, LoopState] = {}
        self._lock = threading.Lock()
        self._written = 0.0

    def beat(self, loop: str, *, ok: bool | None = None, error: str | None = None,
             detail: dict[str, Any] | None = None, force: bool = False) -> None:
        """Record that `loop` is alive; `ok=True` ends an error, `error=...` records one."""
        now = self.clock()
        with self._lock:
            state = self.loops.setdefault(loop, LoopState())
            state.beat = now
            changed = False
            if ok:
                changed = state.error is not None
                state.ok_at, state.failures, state.error, state.error_since = now, 0, None, None
            if error is not None:
                changed = changed or state.error != error
                state.failures += 1
                state.error = error
                if state.error_since is None:
                    state.error_since = now
            if detail:
                changed = changed or any(state.detail.get(k) != v for k, v in detail.items())
                state.detail.update(detail)
            if force or changed or now - self._written >= self.min_interval_s:
                self._write(now)

    def _write(self, now: float) -> None:
        if self.path is None:
            return
        body = {"process": self.process, "pid": os.getpid(), "beat": now,
                "loops": {name: {"beat": s.beat, "ok_at": s.ok_at, "failures": s.failures, "error": s.error,
                                 "error_since": s.error_since,
                                 **({"detail": s.detail} if s.detail else {})}
                          for name, s in self.loops.items()}}
        try:
            atomic_write(self.path, (json.dumps(body, sort_keys=True) + "\n").encode(), mode=0o644)
            self._written = now
        except OSError as exc:  # a full disk must not stop the loop that reports it; the next beat tries again
            log.warning("heartbeat %s not written: %s", self.path, exc)
        self._notify_systemd(now)

    def _notify_systemd(self, now: float) -> None:
        """Under systemd (`WatchdogSec=`, `NotifyAccess=main`), tell its watchdog the process is alive - but only
        while every loop beats within the watchdog's limit, so that a dead worker thread gets the process
        restarted by systemd as `scb run` would restart it."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return
        limit_us = os.environ.get("WATCHDOG_USEC", "")
        limit = int(limit_us) / 1e6 if limit_us.isdigit() else None
        if limit is not None and any(now - s.beat > limit for s in self.loops.values()):
            return
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"WATCHDOG=1", address)
        except OSError as exc:
            log.debug("systemd notification failed: %s", exc)


def read_heartbeats(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every process's last heartbeat in this data directory, by process name (unreadable files skipped)."""
    out: dict[str, dict[str, Any]] = {}
    folder = heartbeat_dir(data_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("beat"), (int, float)):
            out[path.stem] = body
    return out


# ---- the guarded loop ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """What a step returns when it met expected trouble and handled it itself (its own, e.g. persisted, back-off;
    a state recorded where an operator sees it): the Guard shows `reason` as the loop's error in the heartbeat
    while it lasts, without logging it again or adding a back-off of its own. `retry_s`: the wait before the next
    call (None: the loop's interval)."""

    reason: str
    retry_s: float | None = None


@dataclass
class Guard:
    """Applies the policy to one loop: call `step()` repeatedly, `interval_s` apart, until `stop` is set.

    `step` returns nothing, or the seconds to wait before the next call (e.g. 0 while there is a backlog), or a
    `Waiting` for trouble it handled itself. Transient errors back off (`backoff`) and are shown in the
    heartbeat; anything else goes to `on_fatal` (default: log and exit the process with EXIT_LOOP_FAILED).
    For a loop whose timing a scheduler owns (APScheduler interval jobs), `run_once` applies the same policy to
    one call.
    """

    name: str
    heartbeat: Heartbeat
    interval_s: float
    on_fatal: Callable[[str, BaseException], None] = default_on_fatal
    backoff: Backoff = field(default_factory=lambda: jittered(RETRY_INITIAL_S, RETRY_MAX_S))
    clock: Callable[[], float] = time.monotonic

    def _failed(self, exc: BaseException) -> float | None:
        """The delay before the next try, or None when the loop must end (on_fatal was called)."""
        return fail_by_policy(self.name, exc, self.backoff, self.on_fatal, heartbeat=self.heartbeat,
                              clock=self.clock)

    def _succeeded(self, wait: float | Waiting | None) -> float:
        self.backoff.succeed()
        if isinstance(wait, Waiting):
            self.heartbeat.beat(self.name, error=wait.reason)
            return self.interval_s if wait.retry_s is None else max(0.0, wait.retry_s)
        self.heartbeat.beat(self.name, ok=True)
        return self.interval_s if wait is None else max(0.0, wait)

    def run_once(self, step: Callable[[], float | Waiting | None]) -> None:
        """One call of `step` under the policy, for a scheduler's job (the scheduler's interval replaces
        `interval_s`, a returned delay is ignored): skipped, with a beat, while the back-off after a transient
        error runs; transient errors back off and are shown; anything else goes to `on_fatal`."""
        self.heartbeat.beat(self.name)
        if not self.backoff.due(self.clock()):
            return
        try:
            self._succeeded(step())
        except BaseException as exc:  # noqa: BLE001 - the policy decides; KeyboardInterrupt/SystemExit pass
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._failed(exc)

    def run(self, step: Callable[[], float | Waiting | None], stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat(self.name)
            try:
                delay = self._succeeded(step())
            except BaseException as exc:  # noqa: BLE001 - the policy decides; KeyboardInterrupt/SystemExit pass
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                delay = self._failed(exc)
                if delay is None:
                    return
            self._wait(stop, delay)

    def _wait(self, stop: threading.Event, delay: float) -> None:
        end = self.clock() + delay
        while not stop.wait(max(0.0, min(IDLE_BEAT_S, end - self.clock()))):
            if self.clock() >= end:
                return
            self.heartbeat.beat(self.name)

    async def run_async(self, step: Callable[[], Awaitable[float | Waiting | None]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat(self.name)
            try:
                delay = self._succeeded(await step())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the policy decides
                delay = self._failed(exc)
                if delay is None:
                    return
            end = self.clock() + delay
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, min(IDLE_BEAT_S, end - self.clock())))
                except asyncio.TimeoutError:
                    pass
                if self.clock() >= end:
                    break
                self.heartbeat.beat(self.name)
