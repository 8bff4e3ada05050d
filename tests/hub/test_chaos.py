"""Chaos test of `scb run`: the whole hub under kill -9, a locked database and a full database, for two minutes.

The hub runs as a user runs it (`python -m hub.cli --config FILE run`: anvil, the tangle node, the energy manager
on an accelerated community clock, the MAM publisher, settlement and the dashboard), in a temporary data
directory with free ports. Meanwhile, at moments drawn from `random.Random(seed)` (the seed is printed; set
SCB_CHAOS_SEED to replay one: the same database faults and kill attempts at the same moments after the start,
and the same victims as far as the processes' timing allows, since a process is only killed while it runs and the
crash-loop budget below allows it):

* SCB's own processes (energy-manager, mam-client, settlement, dashboard, tangle-node; pids from the supervisor's
  process table) are killed with SIGKILL. anvil is not: it writes its `--state` file only on a clean exit, so a
  kill -9 resets the chain, which is the "reset development chain" case of the settlement tests, not this one;
* twice, a separate sqlite3 connection holds `BEGIN EXCLUSIVE` for 3x the configured busy timeout (and at least
  until some loop has reported the lock in its heartbeat, so the lock demonstrably reached the hub);
* once, the database runs out of space: the configuration gets `database.max_size_mb` at (or below) the current
  size, the writers are killed so that the supervisor restarts them with the cap, and when a heartbeat shows a
  loop failing with SQLite's "database or disk is full", the cap is removed and the writers are killed again.

Then the hub must recover by itself, and the test checks what must hold after any such history:
* readings: each stored once (digests unique), `seq` contiguous from 1 per meter (samples that die in memory
  with a killed energy manager give their numbers back, so there is no legitimate gap), every closed window's
  readings in a MAM message, and the chain on the tangle node carries exactly the stored readings, each once;
* the outbox: every queued message attached, key indexes contiguous from 0 and each address holding one bundle
  (no one-time key used twice), the chain readable end to end from the tangle node alone;
* settlement: periods 1..n in order, each settled period's readings and proofs counted once;
* the supervisor: restart counts cover the kills, every process runs with a fresh heartbeat, none failing or
  hung, no loop ended its process as an unexpected error (exit 70), and `scb status --json` raises no alert.

Kills are spaced so that no process exits `crash_loop_exits` times within the crash-loop window: that would be
marked failing and retried only every `failing_retry_s` (5 minutes), which is the supervisor working as designed,
not a recovery this test could wait for.

Waits follow progress (`Progress`): a wait fails after STALL_S without progress, never after a total time.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from energy_manager.message import decode_message
from mam_client.crypto.trits import trytes_to_ascii
from mam_client.fetch import fetch_chain
from mam_client.transport import PyotaTransport
from scb.files import atomic_write, read_secret_file
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

#: How long the chaos lasts (wall clock). Not a limit on anything: the faults are spread over this time.
CHAOS_S = 120.0
#: A wait fails after this long without progress (not after a total time).
STALL_S = 60.0
BUSY_TIMEOUT_S = 1.0
#: Why 3x: long enough that every writer's busy timeout runs out while it is held (so the write fails and is
#: retried under the failure policy), not merely delayed.
LOCK_HOLD_S = 3 * BUSY_TIMEOUT_S
KILLABLE = ("energy-manager", "mam-client", "settlement", "dashboard", "tangle-node")
WRITERS = ("energy-manager", "mam-client", "settlement")
#: Seconds between two kill attempts (uniform). Why not shorter: the crash-loop budget below allows each of the five
#: processes two kills a minute, so faster attempts would spend it early and leave the rest of the chaos quiet.
KILL_GAP_S = (3.0, 9.0)
#: The supervisor's crash-loop rule (hub.settings defaults, not overridden here): this many exits within the
#: window mark a process failing. The test's window is a little longer, since it sees exits a little late.
CRASH_LOOP_EXITS = 5
CRASH_WINDOW_S = 60.0 + 5.0
#: A process is killed at random only while it has exited at most this often within the window: with the two
#: kills of the full-database phase and one exit of its own (a process restarted while the database is locked
#: may fail at start, by design) it stays below CRASH_LOOP_EXITS.
MAX_RECENT_EXITS = 1
MWM = 3
SPEED = 600  # community seconds per real second: two samples per real second, a period per 6 s
MiB = 1024 * 1024


class Progress:
    """Fails the test when `measure()` has not changed for STALL_S seconds."""

    def __init__(self, what: str, measure: Callable[[], Hashable], on_stall: Callable[[], str] = lambda: "") -> None:
        self.what = what
        self.measure = measure
        self.on_stall = on_stall
        self.last = measure()
        self.since = time.monotonic()

    def check(self) -> Hashable:
        value = self.measure()
        if value != self.last:
            self.last, self.since = value, time.monotonic()
        if time.monotonic() - self.since >= STALL_S:
            raise AssertionError(f"no progress for {STALL_S:.0f} s: {self.what}: {value}\n{self.on_stall()}")
        return value


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Hub:
    """One `scb run` in a temporary directory, and what the test reads of it (files, database, `scb status`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.config_path = root / "scb.toml"
        self.db_path = self.data / "scb.sqlite3"
        self.ports = {"anvil": free_port(), "node": free_port(), "api": free_port(), "dashboard": free_port()}
        self.node_url = f"http://127.0.0.1:{self.ports['node']}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
        self.env["SCB_LOG_LEVEL"] = "INFO"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(max_size_mb=None)

    def write_config(self, max_size_mb: int | None) -> None:
        """The configuration, atomically (a process the supervisor starts meanwhile reads the old or the new)."""
        cap = f"max_size_mb = {max_size_mb}\n" if max_size_mb is not None else ""
        text = f"""
[hub]
id = "chaos-hub"
data_dir = "{self.data}"

[database]
busy_timeout_s = {BUSY_TIMEOUT_S}
{cap}
[ethereum]
local_port = {self.ports['anvil']}

[iota]
mwm = {MWM}

[tangle_node]
port = {self.ports['node']}
mwm = {MWM}
pow_threads = 1

[mam]
api_port = {self.ports['api']}
poll_interval_s = 0.2
backoff_initial_s = 0.2
backoff_max_s = 2.0

[mam.channels.readings]
security = 1

[energy]
households = ["h1", "h2", "h3"]
sample_interval_s = 300
publish_window_s = 1200
clock_speed = {SPEED}
start = "2030-06-21T08:00:00Z"

[settlement]
period_s = 3600
lateness_s = 1200
check_interval_s = 0.5
supply_interval_s = 1.0
retry_initial_s = 0.5
retry_max_s = 2.0

[dashboard]
port = {self.ports['dashboard']}

[alerts]
# tighter than the defaults (15 to 30 minutes), so that "no alert at the end" means the hub caught up within
# this test, not merely that it has not been stuck for half an hour
outbox_max_age_s = 30
settle_max_delay_s = 30
loop_error_s = 20
"""
        atomic_write(self.config_path, text.encode(), mode=0o644)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(self.config_path), "run"],
                                     cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=(self.root / "run.log").open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"scb run exited with {self.proc and self.proc.returncode}\n{self.tails()}"

    def table(self) -> dict[str, dict[str, Any]]:
        """The supervisor's process table by name ({} before its first write)."""
        try:
            body = json.loads((self.data / "run" / "processes.json").read_text())
        except (OSError, ValueError):
            return {}
        return {p["name"]: p for p in body.get("processes", [])}

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path in (self.data / "run" / "heartbeat").glob("*.json"):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while read (atomic_write): the next poll reads it
        return out

    def loop_errors(self, since: float = 0.0) -> dict[tuple[str, str], str]:
        """(process, loop) -> the error a loop shows in a heartbeat written after `since` (wall clock)."""
        return {(name, loop): state["error"] for name, beat in self.heartbeats().items()
                if float(beat.get("beat", 0)) >= since
                for loop, state in (beat.get("loops") or {}).items()
                if isinstance(state, dict) and state.get("error")}

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read in its own connection, closed at once (an open one would hold a WAL snapshot)."""
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def db_bytes(self) -> int:
        """The database's logical size (pages in the file and its WAL): what max_page_count caps."""
        if not self.db_path.exists():
            return 0
        (count,), = self.sql("PRAGMA page_count")
        (size,), = self.sql("PRAGMA page_size")
        return int(count) * int(size)

    def count(self, query: str) -> int:
        try:
            return int(self.sql(query)[0][0] or 0)
        except sqlite3.Error:
            return 0  # the schema is not there yet

    def scb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(self.config_path), *args],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300)

    def status(self) -> dict[str, Any]:
        out = self.scb("status", "--json")
        assert out.returncode in (0, 1), out.stdout[-2000:] + out.stderr[-2000:]
        return json.loads(out.stdout)

    def tails(self) -> str:
        logs = sorted((self.data / "logs").glob("*.log")) + [self.root / "run.log"]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs if p.exists())


class Chaos:
    """Random kills (`pump()`, called from every wait), and the record of kills and exits the checks use."""

    def __init__(self, hub: Hub, rng: random.Random) -> None:
        self.hub = hub
        self.rng = rng
        # separate streams, so that the moments of the kill attempts replay exactly even when timing changes which
        # process an attempt may hit (or whether it hits one)
        self.gaps = random.Random(rng.random())
        self.victims = random.Random(rng.random())
        self.kills: Counter[str] = Counter()
        self.exits: dict[str, list[float]] = {}  # monotonic times the test saw each process's restarts grow
        self.restarts: dict[str, int] = {}
        self.frozen: set[str] = set()  # not killed at random (the full-database phase kills them itself)
        self.next_kill = float("inf")  # until begin()
        #: every child pid the supervisor had: each leads a session of its own (start_new_session), so a process
        #: left in one of these sessions at the end is one of the hub's, or a child of one of them
        self.sessions: set[int] = {hub.proc.pid} if hub.proc else set()
        self.fill_due: float | None = None  # monotonic time of the full-database phase, until it is done
        self.started = time.monotonic()

    def begin(self) -> None:
        """The chaos starts now: times in notes and the first kill attempt count from here."""
        self.started = time.monotonic()
        self.next_kill = self.started + self.gaps.uniform(*KILL_GAP_S)

    def note(self, what: str) -> None:
        print(f"{time.monotonic() - self.started:7.1f} s  {what}", flush=True)

    def observe(self) -> dict[str, dict[str, Any]]:
        self.hub.assert_running()
        table = self.hub.table()
        now = time.monotonic()
        self.sessions.update(r["pid"] for r in table.values() if isinstance(r.get("pid"), int))
        for name, row in table.items():
            grew = int(row.get("restarts", 0)) - self.restarts.get(name, 0)
            if grew > 0:
                self.exits.setdefault(name, []).extend([now] * grew)
                self.restarts[name] = int(row["restarts"])
        return table

    def recent_exits(self, name: str) -> int:
        now = time.monotonic()
        return sum(1 for t in self.exits.get(name, []) if now - t < CRASH_WINDOW_S)

    def spares_fill(self, name: str) -> bool:
        """True if killing writer `name` now leaves it the budget for the full-database phase's two kills: at most
        MAX_RECENT_EXITS exits within the window before `fill_due` (so that phase does not wait for it)."""
        if self.fill_due is None:
            return True
        now, start = time.monotonic(), self.fill_due - CRASH_WINDOW_S
        return now <= start or sum(1 for t in self.exits.get(name, []) if t > start) + 1 <= MAX_RECENT_EXITS

    def kill(self, name: str, table: dict[str, dict[str, Any]]) -> bool:
        """SIGKILL the process `name` of the table, if it runs and is the supervisor's child (never anything else)."""
        row, supervisor = table.get(name), self.hub.proc.pid if self.hub.proc else None
        pid = row.get("pid") if row else None
        if not isinstance(pid, int) or not alive(pid) or parent_of(pid) != supervisor:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kills[name] += 1
        self.note(f"kill -9 {name} (pid {pid}, state {row.get('state')})")  # type: ignore[union-attr]
        return True

    def pump(self) -> None:
        table = self.observe()
        if time.monotonic() < self.next_kill:
            return
        self.next_kill += self.gaps.uniform(*KILL_GAP_S)  # moments fixed by the seed, not by when pump() runs
        candidates = [n for n in KILLABLE if n not in self.frozen and n in table
                      and table[n].get("state") != "failing" and self.recent_exits(n) <= MAX_RECENT_EXITS
                      and (n not in WRITERS or self.spares_fill(n))]
        if candidates:
            self.kill(self.victims.choice(candidates), table)

    def wait(self, progress: Progress, done: Callable[[], bool], poll_s: float = 0.2) -> None:
        while not done():
            self.pump()
            progress.check()
            time.sleep(poll_s)

    # -- the database faults -----------------------------------------------------------------------------------
    def hold_lock(self) -> None:
        """`BEGIN EXCLUSIVE` in a connection of the test's own for LOCK_HOLD_S, and until a loop reports it."""
        conn = sqlite3.connect(self.hub.db_path, timeout=60, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            held, wall = time.monotonic(), time.time()
            self.note(f"database locked (BEGIN EXCLUSIVE; busy timeout {BUSY_TIMEOUT_S} s)")
            seen: dict[tuple[str, str], str] = {}

            def reported() -> bool:
                seen.update({k: v for k, v in self.hub.loop_errors(wall).items() if "locked" in v})
                return bool(seen)

            self.wait(Progress("a loop to report the locked database", lambda: (reported(), len(seen))),
                      lambda: reported() and time.monotonic() - held >= LOCK_HOLD_S)
            conn.execute("ROLLBACK")
            self.note(f"lock released after {time.monotonic() - held:.1f} s; reported by "
                      f"{', '.join(sorted(f'{p}/{loop}' for p, loop in seen))}")
        finally:
            conn.close()

    def restart_writers(self, since: float) -> set[int]:
        """Kill the writers until each runs a process started after `since` (wall clock), i.e. one that read the
        configuration written then; their pids. Why not one kill each: a writer the supervisor is about to start
        (or has started, but not yet written to its table) would escape it, with the old configuration."""
        killed: set[int] = set()

        def fresh(table: dict[str, dict[str, Any]]) -> dict[str, int]:
            return {n: table[n]["pid"] for n in WRITERS if float(table[n].get("started_at") or 0) > since
                    and isinstance(table[n].get("pid"), int) and alive(table[n]["pid"])}

        def done() -> bool:
            table = self.observe()
            for name in WRITERS:
                pid = table[name].get("pid")
                if name not in fresh(table) and pid not in killed and self.kill(name, table):
                    killed.add(pid)
            return len(fresh(table)) == len(WRITERS)

        self.wait(Progress("the writers to restart", lambda: tuple(sorted(fresh(self.observe()).items()))), done)
        return set(fresh(self.observe()).values())

    def fill_database(self) -> None:
        """Cap the database at its current size, restart the writers with the cap until one reports it full, then
        remove the cap and restart them again."""
        self.frozen |= set(WRITERS)
        # the cap must be at or below the current size (SQLite raises a lower max_page_count to the size it has):
        # wait for 1 MiB, and for the writers' crash-loop budget to allow two more exits each
        self.wait(Progress("the database to reach 1 MiB and the writers to be restartable",
                           lambda: (self.hub.db_bytes(), tuple(self.recent_exits(n) for n in WRITERS))),
                  lambda: self.hub.db_bytes() >= MiB and all(self.recent_exits(n) <= MAX_RECENT_EXITS
                                                             for n in WRITERS))
        size = self.hub.db_bytes()
        cap = size // MiB
        self.hub.write_config(max_size_mb=cap)
        capped_at = time.time()
        self.note(f"config: database.max_size_mb = {cap} (database {size / MiB:.2f} MiB)")
        capped = self.restart_writers(capped_at)
        full: dict[tuple[str, str], str] = {}

        def reported() -> bool:
            # a capped writer that exits by itself is started again, with the cap: its pid counts too
            capped.update(r["pid"] for n, r in self.observe().items()
                          if n in WRITERS and float(r.get("started_at") or 0) > capped_at)
            beats = self.hub.heartbeats()
            full.update({(p, loop): e for (p, loop), e in self.hub.loop_errors(capped_at).items()
                         if "full" in e and beats.get(p, {}).get("pid") in capped})
            return bool(full)

        def beating() -> frozenset[str]:
            """The capped writers that have beaten: what moves the wait on until one of them reports."""
            return frozenset(n for n, b in self.hub.heartbeats().items() if b.get("pid") in capped)

        self.wait(Progress("a writer restarted with the cap to report the database full",
                           lambda: (beating(), reported())), reported)
        self.note(f"database full, reported by {', '.join(f'{p}/{loop}: {e}' for (p, loop), e in full.items())}")
        self.hub.write_config(max_size_mb=None)
        uncapped_at = time.time()
        self.note("config: cap removed")
        self.restart_writers(uncapped_at)
        self.frozen -= set(WRITERS)
        self.fill_due = None


def healthy(hub: Hub) -> tuple[bool, tuple[Any, ...]]:
    """Every process of the table runs as the supervisor's child, and every SCB one beats from its current pid."""
    table, beats, now = hub.table(), hub.heartbeats(), time.time()
    rows = []
    for name, row in sorted(table.items()):
        pid = row.get("pid")
        up = isinstance(pid, int) and alive(pid) and row.get("state") == "running"
        beat = beats.get(name, {})
        beating = not row.get("heartbeat") or (beat.get("pid") == pid and now - float(beat.get("beat", 0)) < 30)
        rows.append((name, row.get("state"), up, beating))
    ok = bool(rows) and all(up and beating for _, _, up, beating in rows)
    return ok, tuple(rows)


def test_hub_survives_kills_locks_and_a_full_database(tmp_path: Path) -> None:
    seed = int(os.environ.get("SCB_CHAOS_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print(f"\nchaos seed {seed} (replay: SCB_CHAOS_SEED={seed})", flush=True)
    rng = random.Random(seed)
    hub = Hub(tmp_path)
    began = time.monotonic()
    hub.start()
    chaos = Chaos(hub, rng)
    try:
        last_id = _run(hub, chaos, seed, began)
    finally:
        leftover = _stop(hub, chaos.sessions)
    assert not leftover, f"processes still running after the supervisor stopped: {leftover}"
    _check_database(hub, last_id)
    print(f"total {time.monotonic() - began:.0f} s (seed {seed})", flush=True)


def _run(hub: Hub, chaos: Chaos, seed: int, began: float) -> int:
    """Start, chaos, recovery and the checks that need the hub running; the newest message id at recovery."""
    rng = chaos.rng
    # -- start-up: every process beating, the first message attached ---------------------------------------------
    def started() -> bool:
        chaos.observe()
        return healthy(hub)[0] and hub.count("SELECT count(*) FROM mam_messages WHERE state = 'attached'") > 0

    progress = Progress("the hub to start", lambda: (healthy(hub)[1], hub.count(
        "SELECT count(*) FROM energy_readings")), hub.tails)
    while not started():
        progress.check()
        time.sleep(0.5)
    chaos.begin()
    chaos.note(f"hub up after {chaos.started - began:.0f} s; chaos for {CHAOS_S:.0f} s (seed {seed})")

    # -- the chaos -----------------------------------------------------------------------------------------------
    # the full database early enough that the writers' crash-loop budget is back for random kills near the end
    # (the database reaches the 1 MiB the cap needs about half a minute after the start: two samples a second)
    locks = [rng.uniform(5, 25), rng.uniform(80, 110)]
    fill_at = rng.uniform(30, 45)
    filled = False
    chaos.fill_due = chaos.started + fill_at
    end = chaos.started + CHAOS_S
    while time.monotonic() < end or not filled:
        elapsed = time.monotonic() - chaos.started
        if locks and elapsed >= locks[0]:
            locks.pop(0)
            chaos.hold_lock()
        elif not filled and elapsed >= fill_at:
            chaos.fill_database()
            filled = True
        chaos.pump()
        time.sleep(0.2)
    recovery = time.monotonic()
    chaos.note(f"chaos over: {sum(chaos.kills.values())} kills {dict(chaos.kills)}")

    # -- recovery, with no further fault ---------------------------------------------------------------------------
    def health() -> tuple[Any, ...]:
        chaos.observe()
        return healthy(hub)[1]

    wait_until("every process running and beating", health, lambda: healthy(hub)[0], hub)
    chaos.note(f"all processes running and beating {time.monotonic() - recovery:.0f} s after the chaos")
    last_id = hub.count("SELECT max(id) FROM mam_messages")
    attached = f"SELECT count(*) FROM mam_messages WHERE state = 'attached' AND id <= {last_id}"
    total = hub.count(f"SELECT count(*) FROM mam_messages WHERE id <= {last_id}")
    wait_until(f"messages 1..{last_id} attached", lambda: hub.count(attached), lambda: hub.count(attached) == total,
               hub)
    chaos.note(f"messages 1..{last_id} attached {time.monotonic() - recovery:.0f} s after the chaos")
    alerts: list[dict[str, Any]] = []

    def alert_codes() -> frozenset[str]:
        alerts[:] = hub.status()["alerts"]
        return frozenset(f"{a['code']}: {a['message'].split(':')[0]}" for a in alerts)

    wait_until("no alert in scb status", alert_codes, lambda: not alerts, hub, poll_s=1.0)
    chaos.note(f"no alert {time.monotonic() - recovery:.0f} s after the chaos")

    # -- the supervisor's account ----------------------------------------------------------------------------------
    status = hub.status()
    assert status["alerts"] == [], status["alerts"]
    rows = {p["name"]: p for p in status["processes"]}
    # anvil and the demo households (they act on the embedded chain only; they keep no state of their own and
    # write nothing to the database, so killing them would test nothing the writers' kills do not) are not killed
    assert set(rows) == {"anvil", "demo-households", *KILLABLE}, sorted(rows)
    summary = []
    for name, row in sorted(rows.items()):
        assert row["running"] and row["state"] == "running", row
        assert row["hung_restarts"] == 0, row  # nothing here stops a process for heartbeat_timeout_s
        assert row["restarts"] >= chaos.kills[name], (name, row["restarts"], chaos.kills[name])
        if row["heartbeat"]:  # (a loop failing for longer than loop_error_s is the alert loop-failing)
            assert row.get("heartbeat_age_s") is not None and row["heartbeat_age_s"] < 30, row
        summary.append(f"{name} {chaos.kills[name]} kills / {row['restarts']} restarts")
    chaos.note("; ".join(summary))
    for name in KILLABLE:  # exits of a process's own (e.g. at start while the database was locked): shown, not failed
        if rows[name]["restarts"] > chaos.kills[name]:
            said = [line for line in (hub.data / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
                    if line.startswith("scb: ")]
            chaos.note(f"{name} exited {rows[name]['restarts'] - chaos.kills[name]} time(s) by itself: {said[-3:]}")
    fatal = [p.name for p in (hub.data / "logs").glob("*.log") if "met an error it does not expect" in
             p.read_text(errors="replace")]
    assert not fatal, f"a loop exited on an unexpected error (exit 70) in {fatal}:\n{hub.tails()}"
    assert sum(chaos.kills.values()) >= 10, chaos.kills  # the test did what it says

    # -- the chain, from the tangle node alone ---------------------------------------------------------------------
    _check_chain(hub, last_id)

    # -- one settled reading proven end to end -----------------------------------------------------------------------
    settled = hub.sql("SELECT DISTINCT m.address FROM mam_messages m JOIN energy_readings r ON r.message_id = m.id "
                      "JOIN settlement_periods p ON p.period_id = r.period WHERE p.state = 'settled'")
    assert settled, "no period was settled"
    address = rng.choice(sorted(a for (a,) in settled))
    verify = hub.scb("verify", address, "--json")
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
    assert json.loads(verify.stdout)["verdict"] == "VALID"
    chaos.note(f"scb verify {address[:20]}...: VALID")
    return last_id


def wait_until(what: str, measure: Callable[[], Hashable], done: Callable[[], bool], hub: Hub,
               poll_s: float = 0.5) -> None:
    progress = Progress(what, measure, hub.tails)
    while not done():
        hub.assert_running()
        progress.check()
        time.sleep(poll_s)


def _check_chain(hub: Hub, last_id: int) -> None:
    """Messages 1..last_id, walked from the channel's first root on the tangle node (no archive): each once, in
    key-index order, each address holding one bundle, and together carrying exactly their stored readings."""
    (first_root, mode), = hub.sql("SELECT first_root, mode FROM mam_channels WHERE name = 'readings'")
    side_key = read_secret_file(hub.data / "secrets" / "mam-readings.sidekey") if mode == "restricted" else None
    rows = hub.sql("SELECT m.id, m.key_index, m.address, b.data FROM mam_messages m JOIN mam_message_bodies b "
                   "ON b.message_id = m.id AND b.part = 'message' WHERE m.channel = 'readings' AND m.id <= ? "
                   "ORDER BY m.key_index", last_id)
    rows = [(i, k, a, zlib.decompress(data).decode("ascii")) for i, k, a, data in rows]  # stored deflated
    assert [r[1] for r in rows] == list(range(len(rows))), "key indexes are not 0, 1, 2, ... once each"
    transport = PyotaTransport(hub.node_url, mwm=MWM)
    fetched = []
    for item in fetch_chain(transport, first_root, mode, side_key):
        fetched.append(item)
        if len(fetched) == len(rows):
            break
    assert [f.address for f in fetched] == [r[2] for r in rows], "the chain on the node differs from the outbox"
    assert [f.message for f in fetched] == [r[3] for r in rows]
    assert all(f.source == "node" for f in fetched)
    for _, index, address, _ in rows:
        bundles = transport.find_bundles(address)
        assert len(bundles) == 1, f"key index {index}: {len(bundles)} bundles at {address}"
    carried = Counter()
    for f in fetched:
        for reading in decode_message(trytes_to_ascii(f.message)).readings:
            carried[(reading.meter, reading.seq)] += 1
    assert max(carried.values()) == 1, [k for k, n in carried.items() if n > 1][:10]
    stored = {(m, s) for m, s in hub.sql("SELECT meter, seq FROM energy_readings WHERE message_id <= ?", last_id)}
    assert set(carried) == stored, (sorted(set(carried) - stored)[:10], sorted(stored - set(carried))[:10])


def sessions_of() -> dict[int, int]:
    """pid -> session id of every process on this machine (that can be read)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                out[int(entry.name)] = int(fields[3])
    return out


def _stop(hub: Hub, sessions: set[int]) -> list[int]:
    """SIGTERM the supervisor (it stops its children); the processes of the hub's sessions that still run (after
    killing them, so that a failed test leaves nothing behind)."""
    if hub.proc is None:
        return []
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)
        try:
            hub.proc.wait(timeout=90)  # the supervisor gives its children 20 s, then kills them
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait()
    time.sleep(0.5)
    leftover = sorted(pid for pid, sid in sessions_of().items() if sid in sessions)
    for sid in sessions & {sessions_of().get(pid) for pid in leftover}:
        try:
            os.killpg(sid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftover


def _check_database(hub: Hub, last_id: int) -> None:
    """The invariants of the stored data after the hub stopped."""
    # readings: stored once, numbered 1..n per meter
    (n, digests), = hub.sql("SELECT count(*), count(DISTINCT digest) FROM energy_readings")
    assert n > 0 and n == digests
    for meter, count, low, high, distinct in hub.sql(
            "SELECT meter, count(*), min(seq), max(seq), count(DISTINCT seq) FROM energy_readings GROUP BY meter"):
        assert (low, high, distinct) == (1, count, count), f"meter {meter}: seq {low}..{high}, {count} readings"
    # every window but the one still open at the stop is in a message
    open_windows = hub.sql("SELECT DISTINCT window_start_ms FROM energy_readings WHERE message_id IS NULL")
    newest, = hub.sql("SELECT max(window_start_ms) FROM energy_readings")[0]
    assert all(w == newest for (w,) in open_windows), (open_windows, newest)
    # the outbox: every message up to the end of the recovery attached; only a tail enqueued later may wait
    states = hub.sql("SELECT id, state, key_index FROM mam_messages ORDER BY id")
    assert all(state == "attached" for i, state, _ in states if i <= last_id)
    waiting = [i for i, state, _ in states if state != "attached"]
    assert all(i > max(a for a, state, _ in states if state == "attached") for i in waiting), waiting
    indexes = sorted(k for _, _, k in states if k is not None)
    assert indexes == list(range(len(indexes))), "a key index is used twice or skipped"
    # settlement: periods 1..n; each settled period's readings and proofs counted once
    periods = hub.sql("SELECT period_id, state, reading_count, id FROM settlement_periods ORDER BY period_id")
    assert [p[0] for p in periods] == list(range(1, len(periods) + 1))
    assert periods and all(state == "settled" for _, state, _, _ in periods[:-1]), periods[-3:]
    for period_id, state, reading_count, ref in periods:
        (assigned,), = hub.sql("SELECT count(*) FROM energy_readings WHERE period = ?", period_id)
        (proofs,), = hub.sql("SELECT count(*) FROM settlement_proofs WHERE period_ref = ?", ref)
        assert assigned == reading_count == proofs, (period_id, state, assigned, reading_count, proofs)
