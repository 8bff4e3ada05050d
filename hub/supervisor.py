"""`scb run`: start every process of the hub (hub.processes), keep them alive, stop them all on Ctrl-C / SIGTERM.

A hub runs unattended, so the supervisor sees more than exits:
* a process that exits is restarted with a growing delay (1, 2, 4 ... 60 s); the database is the queue between
  the processes, so a restart loses nothing;
* one that exits `crash_loop_exits` times within `crash_loop_window_s` is marked **failing** (in the process
  table, so in `scb status` and on the dashboard) and retried only every `failing_retry_s`: a configuration
  error or a broken disk does not become a restart storm, and the hub still recovers once it is fixed;
* one whose heartbeat (scb.loop) is older than `heartbeat_timeout_s` is marked **hung**, stopped (SIGTERM, then
  SIGKILL) and restarted: a process whose worker thread died, or that waits forever, is not left looking alive.
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hub.forking import preload
from hub.processes import FAILING, HUNG, RESTARTING, RUNNING, SCB_COMMAND, Child, plan, \
    write_process_file
from hub.settings import RunSettings, run_settings
from scb.config import Config, load_config
from scb.loop import read_heartbeats

log = logging.getLogger("scb.run")
#: seconds a process gets to stop after SIGTERM before it is killed
STOP_GRACE_S = 20.0
RESTART_MAX_DELAY_S = 60.0
#: a hung process gets this long between SIGTERM and SIGKILL (it may be finishing a database write)
HUNG_KILL_GRACE_S = 10.0
#: how often the supervisor reads the heartbeats (a file read per process)
HEARTBEAT_CHECK_S = 5.0
#: a restarted process that stays up this long is shown as running again
STABLE_AFTER_S = 10.0
#: ceiling for `scb db upgrade` before the processes start (a first migration takes about a second; a database
#: locked by another program waits its busy timeout): past it the processes start and migrate themselves
MIGRATE_CEILING_S = 300.0


class Supervisor:
    """Keeps `children` alive; `tick()` is one pass of the loop (separate, so tests drive it step by step)."""

    def __init__(self, children: list[Child], settings: RunSettings, data_dir: Path | None) -> None:
        self.children = children
        self.settings = settings
        self.data_dir = data_dir
        self._next_beat_check = 0.0
        self._dirty = False

    def start_all(self, pause_s: float = 0.5) -> None:
        for child in self.children:
            child.start()
            time.sleep(pause_s)  # the chain and the node come first; the rest retry until they answer anyway
        self.save()

    def save(self) -> None:
        if self.data_dir is not None:
            write_process_file(self.data_dir, self.children)
        self._dirty = False

    def _exited(self, child: Child, now: float) -> None:
        code = child.proc.returncode if child.proc else None
        child.restarts += 1
        child.last_exit_code, child.last_exit_at = code, time.time()
        child.exits.append(now)
        while child.exits and now - child.exits[0] > self.settings.crash_loop_window_s:
            child.exits.popleft()
        if child.state == HUNG:
            delay = 1.0
        elif len(child.exits) >= self.settings.crash_loop_exits:
            delay = self.settings.failing_retry_s
            if child.state != FAILING:
                log.error("%s exited %d times within %.0f s (last code %s): marked failing, retried every %.0f s "
                          "(see %s)", child.name, len(child.exits), self.settings.crash_loop_window_s, code, delay,
                          child.log_path)
            child.state = FAILING
            child.note = f"exited {len(child.exits)} times in {self.settings.crash_loop_window_s:.0f} s, " \
                         f"last with code {code}"
        else:
            delay = min(RESTART_MAX_DELAY_S, 2.0 ** max(0, len(child.exits) - 1))
            child.state = RESTARTING if child.state != FAILING else FAILING
            child.note = f"exited with code {code}"
            log.warning("%s exited with code %s; restarting in %.0f s (see %s)", child.name, code, delay,
                        child.log_path)
        child.next_start = now + delay
        self._dirty = True

    def _check_heartbeats(self, now: float) -> None:
        if self.data_dir is None or now < self._next_beat_check:
            return
        self._next_beat_check = now + HEARTBEAT_CHECK_S
        beats = read_heartbeats(self.data_dir)
        wall = time.time()
        timeout = self.settings.heartbeat_timeout_s
        for child in self.children:
            if not child.beats or not child.running() or child.kill_at is not None or child.proc is None:
                continue
            beat = beats.get(child.name)
            if beat is None or beat.get("pid") != child.proc.pid:
                age, what = now - child.started_mono, "has written no heartbeat since it started"
                stale = [] if age <= timeout else ["process"]
            else:
                age, what = wall - float(beat["beat"]), "stopped beating"
                stale = ["process"] if age > timeout else [
                    name for name, loop in beat.get("loops", {}).items()
                    if isinstance(loop, dict) and wall - float(loop.get("beat", wall)) > timeout]
                if stale and stale != ["process"]:
                    what = f"loop {', '.join(stale)} stopped beating"
            if not stale:
                continue
            log.error("%s %s %.0f s ago (limit %.0f s): hung; restarting it (see %s)", child.name, what, age,
                      timeout, child.log_path)
            child.state, child.note = HUNG, f"{what} (limit {timeout:.0f} s)"
            child.hung_restarts += 1
            child.stop()
            child.kill_at = now + HUNG_KILL_GRACE_S
            self._dirty = True

    def tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.running():
                if child.kill_at is not None and now >= child.kill_at:
                    log.warning("%s ignored SIGTERM; killing it", child.name)
                    child.kill_group()
                elif child.state in (RESTARTING, HUNG) and now - child.started_mono > STABLE_AFTER_S:
                    child.state, child.note = RUNNING, ""
                    self._dirty = True
                elif child.state == FAILING and now - child.started_mono > self.settings.crash_loop_window_s:
                    child.state, child.note = RUNNING, ""  # stayed up a whole window: no longer failing
                    child.exits.clear()
                    self._dirty = True
                continue
            if child.next_start == 0.0:
                self._exited(child, now)
            elif now >= child.next_start:
                child.next_start = 0.0
                child.start()
                self._dirty = True
        self._check_heartbeats(now)
        if self._dirty:
            self.save()

    def stop_all(self) -> None:
        log.info("stopping %d processes", len(self.children))
        for child in reversed(self.children):
            child.stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in reversed(self.children):
            child.wait_or_kill(deadline)
        log.info("all processes stopped")


def first_attached_address(config: Config, readers: dict[str, Any]) -> str | None:
    """The address of the hub's first attached MAM message, or None (no database, schema or message yet).

    On SQLite it reads with plain sqlite3 (scb.sqlite_reader), in a connection opened for this one query: the
    supervisor forks the hub's processes (hub.forking), which must not inherit an open SQLite connection to the
    database they write (SQLite's locks are per process), and SQLAlchemy with the models would cost it about 25 MB
    for this one query (issue 16). A server database goes through scb.db, its engine kept in `readers` between
    calls: the supervisor asks every two seconds until there is a message.
    """
    from scb.sqlite_reader import connect_read_only, sqlite_path

    url = config.database_url
    path = sqlite_path(url)
    try:
        if path is not None:
            if not path.exists():
                return None
            reader = connect_read_only(path, config.sqlite_busy_timeout_ms)  # never waits for the writers' lock
            try:
                row = reader.execute("SELECT address FROM mam_messages WHERE state = 'attached' "
                                     "ORDER BY id LIMIT 1").fetchone()
            finally:
                reader.close()
            return row[0] if row else None
        from sqlalchemy import select

        from mam_client.models import ATTACHED, OutboxMessage
        from scb.db import make_engine

        if url not in readers:
            readers[url] = make_engine(url, busy_timeout_ms=config.sqlite_busy_timeout_ms, read_only=True)
        with readers[url].connect() as conn:
            return conn.scalars(select(OutboxMessage.address).where(OutboxMessage.state == ATTACHED)
                                .order_by(OutboxMessage.id).limit(1)).first()
    except Exception:  # noqa: BLE001 - the schema may not exist yet while the first process starts
        return None


def close_readers(readers: dict[str, Any]) -> None:
    """Dispose of the engines first_attached_address kept."""
    for engine in readers.values():
        engine.dispose()
    readers.clear()


def endpoints(config: Config, names: set[str]) -> list[tuple[str, str]]:
    """What a person opens, from each component's own settings (no port is repeated here)."""
    from dashboard.settings import dashboard_settings
    from mam_client.node.settings import NodeSettings
    from mam_client.settings import mam_settings
    from settlement.settings import ethereum_settings

    out = []
    if "dashboard" in names:
        dash = dashboard_settings(config)
        out.append(("dashboard", f"http://{dash.host}:{dash.port}/"))
    mam = mam_settings(config)
    out.append(("MAM API", f"http://{mam.api_host}:{mam.api_port}/channels"))
    if "tangle-node" in names:
        out.append(("tangle node", NodeSettings.from_config(config).url))
    if "anvil" in names:
        out.append(("local chain", ethereum_settings(config).rpc_url))
    return out


def announce(config: Config, children: list[Child], readers: dict[str, Any]) -> bool:
    """Print what runs where once the first MAM message is attached; False while there is none yet."""
    address = first_attached_address(config, readers)
    if not address:
        return False
    lines = ["", "SCB hub is running:"]
    lines += [f"  {what:<14} {url}" for what, url in endpoints(config, {c.name for c in children})]
    scb = Path(sys.executable).with_name("scb")
    lines += [f"  first MAM message at {address}",
              f"  verify it once its period is settled (see {scb} status):",
              f"    {scb} verify {address}", ""]
    print("\n".join(lines), flush=True)
    return True


def supervise(children: list[Child], stop_after: float | None = None, config: Config | None = None,
              settings: RunSettings | None = None) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings is None:
        settings = run_settings(config) if config is not None else run_settings(Config())
    supervisor = Supervisor(children, settings, config.data_dir if config is not None else None)
    try:
        supervisor.start_all()
        started = time.monotonic()
        announced = config is None
        next_announce_check = 0.0
        readers: dict[str, Any] = {}
        while not stopping:
            if not announced and time.monotonic() >= next_announce_check:
                announced = announce(config, children, readers)  # type: ignore[arg-type]
                next_announce_check = time.monotonic() + 2.0
                if announced:
                    close_readers(readers)
            if stop_after is not None and time.monotonic() - started > stop_after:
                break
            supervisor.tick()
            time.sleep(0.5)
    finally:  # whatever ends the supervisor, its processes must not outlive it unsupervised
        supervisor.stop_all()
    return 0


def migrate_first(config: Config, config_path: str | None) -> int | None:
    """Run `scb db upgrade` once, in its own short-lived process, before the hub's processes start.

    Why: every process migrates the database at its start (scb.db.init_db), importing Alembic only when there is
    something to do (scb.migrate.upgrade). On a new or updated hub the first process to start would find work and
    hold Alembic (about 37 MB resident, issue 16) for its whole life; migrating here first, in a process that then
    exits, lets every long-running process find the database at the newest revision. Nothing depends on it: if it
    fails (the exit code is returned and logged, None past the ceiling), the processes migrate themselves and
    report what is wrong as before."""
    argv = SCB_COMMAND + (["--config", config_path] if config_path else []) + ["db", "upgrade"]
    log_path = config.data_dir / "logs" / "db-upgrade.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        try:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=MIGRATE_CEILING_S).returncode
        except subprocess.TimeoutExpired:
            log.warning("scb db upgrade did not finish within %.0f s; the processes migrate themselves (see %s)",
                        MIGRATE_CEILING_S, log_path)
            return None
    if code != 0:
        log.warning("scb db upgrade exited with code %d; the processes migrate themselves (see %s)", code, log_path)
    return code


def share_imports(children: list[Child], database_url: str | None = None) -> None:
    """Run SCB's own processes as forks of this one once it has imported their modules (hub.forking); anvil and
    anything else that is not an `scb` command is exec'd as before. Nothing changes if the imports fail."""
    ours = [c for c in children if c.argv[:len(SCB_COMMAND)] == SCB_COMMAND]
    if ours and preload((c.name for c in ours), database_url):
        for child in ours:
            child.fork_args = child.argv[len(SCB_COMMAND):]
        log.info("the hub's processes are forked from one set of imports ([run] fork_processes)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the whole hub: every process, with logs under the data directory")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = run_settings(config)
    children = plan(config, args.config)
    print(f"SCB hub {config.hub['id']}: data in {config.data_dir}, logs in {config.data_dir / 'logs'}", flush=True)
    for child in children:
        print(f"  {child.name:<15} {' '.join(child.argv[1:] if child.argv[0] == sys.executable else child.argv)}",
              flush=True)
    migrate_first(config, args.config)
    if settings.fork_processes:
        share_imports(children, config.database_url)
    print("Ctrl-C stops everything. Waiting for the first MAM message...", flush=True)
    return supervise(children, config=config, settings=settings)
