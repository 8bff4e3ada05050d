"""The embedded default hub (`scb run`) in a temporary data directory, for the benchmarks of issue 16.

Why its own ports: the benchmark must not collide with a hub (or a test) already running on the defaults
(8545, 14265, 8710, 8720), so each run picks free ports and passes them as `SCB_*` overrides, which is how a
newcomer would move them too. Everything else is the embedded default: no scb.toml (the supervisor runs with the
temporary directory as its working directory, so no ./scb.toml is picked up).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402 - the test suite's, as benchmarks/fleet_ingest.py uses it
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def work_dir(keep: Path | None, prefix: str) -> Path:
    """The benchmark's directory: `--keep DIR` as given, else a new temporary one (removed by `report`)."""
    return keep or Path(tempfile.mkdtemp(prefix=prefix))


def report(result: dict[str, Any], root: Path, keep: Path | None) -> int:
    """Print the benchmark's result as JSON and remove its directory unless it was `--keep`; the exit code."""
    print(json.dumps(result, indent=2))
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def add_savings(variants: dict[str, dict[str, Any]], base: str, figure: str, saves: str) -> None:
    """Set each variant's `saves`: how much less of `figure` it has than the variant `base` (negative: more), for
    the benchmarks that replay one thing with one step left out or changed (sample_writes, node_writes)."""
    reference = variants[base][figure]
    for variant in variants.values():
        variant[saves] = round(reference - variant[figure], 1)


def stack_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an embedded-default hub in `data_dir`, on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env.update({
        "SCB_HUB__DATA_DIR": str(data_dir),
        "SCB_ETHEREUM__LOCAL_PORT": str(free_port()),
        "SCB_TANGLE_NODE__PORT": str(free_port()),
        "SCB_MAM__API_PORT": str(free_port()),
        "SCB_DASHBOARD__PORT": str(free_port()),
        "PYTHONPATH": str(REPO),
    })
    env.update(extra or {})
    return env


@dataclass
class Stack:
    """`scb run` as a child process group; `stop()` ends it the way Ctrl-C does (SIGTERM to the supervisor)."""

    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir.parent / "scb-run.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([PYTHON, "-m", "hub.cli", "run"], cwd=self.data_dir.parent, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 90.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # anything of the group still there (a child the supervisor lost) is ended too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    # ---- what the hub's database says ----

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the hub database (read-only, never taking the write lock); [] before its tables exist."""
        return ro_query(self.data_dir / "scb.sqlite3", sql, params)

    def settled_periods(self) -> int:
        rows = self.query("SELECT count(*) FROM settlement_periods WHERE state='settled'")
        return int(rows[0][0]) if rows else 0

    def wait_until(self, what: str, done: Any, ceiling_s: float, poll_s: float = 2.0) -> float:
        """Poll `done()` until true; returns the seconds since start. A generous ceiling, not a budget: past it
        (or when the supervisor died) the benchmark stops with the log's tail."""
        end = time.monotonic() + ceiling_s
        while time.monotonic() < end:
            if done():
                return time.monotonic() - self.started
            if not self.alive():
                raise SystemExit(f"scb run exited while waiting for {what}; see {self.log}:\n{tail(self.log)}")
            time.sleep(poll_s)
        raise SystemExit(f"{what} did not happen within {ceiling_s:.0f} s; see {self.log}:\n{tail(self.log)}")

    # ---- the process tree ----

    def processes(self) -> list[dict[str, Any]]:
        """Every live process of the hub's tree: the supervisor and its descendants, each with the name of the
        `scb run` process it belongs to (a launcher's child, such as anvil's binary under its Node launcher,
        is named after its parent plus its own command)."""
        assert self.proc is not None
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        names: dict[int, str] = {self.proc.pid: "supervisor (scb run)"}
        try:
            table = json.loads((self.data_dir / "run" / "processes.json").read_text())
            for row in table.get("processes", []):
                if isinstance(row.get("pid"), int):
                    names[row["pid"]] = row["name"]
        except (OSError, ValueError):
            pass
        tree = [self.proc.pid]
        i = 0
        while i < len(tree):
            tree.extend(sorted(p for p, pp in parents.items() if pp == tree[i]))
            i += 1
        out = []
        for pid in tree:
            comm = read(f"/proc/{pid}/comm").strip()
            if not comm:
                continue
            name = names.get(pid)
            if name is None:
                name = f"{names.get(parents.get(pid, 0), '?')}/{comm}"
            out.append({"name": name, "pid": pid, "comm": comm})
        return out


def ro_query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query of a SQLite file of the hub (never taking its write lock); [] before it or its tables
    exist."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return []


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def memory_kb(pid: int) -> dict[str, int]:
    """RSS, PSS and private dirty pages from /proc/PID/smaps_rollup. PSS shares each shared page among its users
    (so it moves when other processes map the same libraries); private dirty is the process's own heap and
    written pages alone, the figure in which a leak shows whatever else runs on the machine."""
    out = {"rss_kb": 0, "pss_kb": 0, "private_dirty_kb": 0}
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Private_Dirty"):
            out[f"{key.lower()}_kb"] = int(value.split()[0])
    return out


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: `write_bytes` is what the process caused to be written to the block device."""
    out: dict[str, int] = {}
    for line in read(f"/proc/{pid}/io").splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process so far (threads included), from /proc/PID/stat."""
    fields = read(f"/proc/{pid}/stat").rsplit(")", 1)
    if len(fields) < 2:
        return 0.0
    parts = fields[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(read(str(path)).splitlines()[-lines:])


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total
