"""The process plan of `scb run` and its process table.

Processes, in start order (ARCHITECTURE.md "Processes"):
1. anvil, the local Ethereum chain (state kept in the data directory; its binary, not its Node launcher) - only
   when no external RPC is configured;
2. `scb tangle-node` - only when no external IOTA node is configured;
3. `scb energy-manager`, 4. `scb mam-client`, 5. `scb settlement`, 6. `scb dashboard`;
7. `scb fleet-upload` - only when `[fleet] url` is set (docs/fleet.md);
8. `scb demo-households` - only on the embedded chain's demo system (settlement.households);
9. `scb home-assistant` - only when `[mqtt] url` is set (home_assistant.bridge).

The process table (`<data_dir>/run/processes.json`) says where each runs and how it fares; `scb status` and the
dashboard read it together with the processes' heartbeats (scb.loop).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from hub.cli import COMMANDS
from hub.forking import ForkedProcess, fork_process
from scb.config import Config
from scb.errors import ConfigError
from scb.files import atomic_write
from scb.loop import read_heartbeats

log = logging.getLogger("scb.run")
REPO = Path(__file__).resolve().parent.parent

#: Process states in the table.
STARTING, RUNNING, RESTARTING, FAILING, HUNG, STOPPED = "starting", "running", "restarting", "failing", "hung", \
    "stopped"
#: How `scb run` starts SCB's own processes: this interpreter, the `scb` command's module.
SCB_COMMAND = [sys.executable, "-m", "hub.cli"]


@dataclass
class Child:
    """One process `scb run` keeps alive."""

    name: str
    argv: list[str]
    log_path: Path
    #: True for SCB's own processes, which write a heartbeat (scb.loop); anvil does not
    beats: bool = True
    #: `scb` arguments to run in a fork of the supervisor (hub.forking) instead of exec'ing `argv`: set by the
    #: supervisor once it has imported this process's modules
    fork_args: list[str] | None = None
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    log_file: IO[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    state: str = STARTING
    #: monotonic times of recent exits (crash-loop detection)
    exits: deque[float] = field(default_factory=deque)
    last_exit_code: int | None = None
    last_exit_at: float | None = None  # wall clock
    started_at: float | None = None  # wall clock
    started_mono: float = 0.0
    hung_restarts: int = 0
    #: why the process was last restarted or marked, for the table
    note: str = ""
    kill_at: float | None = None  # monotonic: SIGKILL a hung process that ignored SIGTERM after this

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file is None:
            self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        if self.fork_args is not None:
            from hub.cli import main

            args = self.fork_args
            self.proc = fork_process(self.name, lambda: main(args), self.log_file.fileno(), self.env)
        else:
            self.proc = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                         start_new_session=True)
        self.started_at, self.started_mono, self.kill_at = time.time(), time.monotonic(), None
        if self.state == STARTING:  # a restarted one keeps its state until the supervisor sees it stay up
            self.state = RUNNING
        log.info("started %s (pid %d), log %s", self.name, self.proc.pid, self.log_path)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        if self.proc is not None and self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_or_kill(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name)
            self.kill_group()
            self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.proc.pid if self.proc else None, "state": self.state,
                "restarts": self.restarts, "hung_restarts": self.hung_restarts,
                "recent_exits": len(self.exits), "last_exit_code": self.last_exit_code,
                "last_exit_at": self.last_exit_at, "started_at": self.started_at, "note": self.note,
                "heartbeat": self.beats, "log": str(self.log_path)}


#: The commands `scb run` may start. The plan asks whether each one's module (the first hub.cli.COMMANDS names) is
#: installed (importlib.util.find_spec) instead of building the `scb` command table: building it imports every
#: component's CLI, and with it web3, SQLAlchemy and aiohttp, into the supervisor, which uses none of them (about
#: 50 MB of resident memory held for the hub's lifetime; issue 16). hub.cli itself imports only the standard
#: library and scb.errors, and `scb run` runs inside it already.
RUN_COMMANDS = ("tangle-node", "energy-manager", "mam-client", "settlement", "dashboard", "demo-households",
                "home-assistant", "fleet-upload")
COMMAND_MODULE = {command: COMMANDS[command][0] for command in RUN_COMMANDS}


def available_commands() -> set[str]:
    """The commands of COMMAND_MODULE whose module is installed, found without importing any of them."""
    out = set()
    for command, module in COMMAND_MODULE.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its package is missing (a component not in this installation)
            found = False
        if found:
            out.add(command)
    return out


#: anvil's npm package (@foundry-rs/anvil) is a Node launcher that spawns the platform package's binary and
#: forwards signals to it: a Node process of about 40 MB resident for nothing but that. Its platform packages,
#: by Python's (platform.system(), platform.machine()), as the launcher's const.mjs names them.
_ANVIL_PLATFORM = {("Linux", "x86_64"): "linux-amd64", ("Linux", "aarch64"): "linux-arm64",
                   ("Linux", "arm64"): "linux-arm64", ("Darwin", "x86_64"): "darwin-amd64",
                   ("Darwin", "arm64"): "darwin-arm64"}


def anvil_command(repo: Path = REPO) -> str:
    """The anvil to run: the binary of @foundry-rs/anvil's platform package when npm installed it (exec'd
    directly, no Node launcher), else the launcher (node_modules/.bin/anvil), else `anvil` on PATH."""
    import platform

    suffix = _ANVIL_PLATFORM.get((platform.system(), platform.machine()))
    if suffix is not None:
        binary = repo / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    launcher = repo / "node_modules" / ".bin" / "anvil"
    if launcher.exists():
        return str(launcher)
    if shutil.which("anvil") is not None:
        return "anvil"
    raise ConfigError("anvil is not installed: run ./start_scb.sh setup, or set [ethereum] rpc_url")


def plan(config: Config, config_path: str | None) -> list[Child]:
    """The processes this hub runs, from the configuration."""
    logs = config.data_dir / "logs"
    scb = SCB_COMMAND + (["--config", config_path] if config_path else [])
    commands = available_commands()
    children: list[Child] = []
    from mam_client.settings import iota_settings
    from settlement.settings import ethereum_settings

    eth = ethereum_settings(config)
    if "settlement" in commands and eth.embedded:
        port = str(urlsplit(eth.rpc_url).port)
        children.append(Child("anvil", [anvil_command(), "--host", "127.0.0.1", "--port", port,
                                        "--state", str(config.data_dir / "anvil-state.json"), "--silent"],
                              logs / "anvil.log", beats=False))
    if "tangle-node" in commands and iota_settings(config).embedded_node:
        children.append(Child("tangle-node", scb + ["tangle-node"], logs / "tangle-node.log"))
    for name in ("energy-manager", "mam-client", "settlement", "dashboard"):
        if name in commands:
            children.append(Child(name, scb + [name], logs / f"{name}.log"))
    from hub.fleet.settings import fleet_settings

    if "fleet-upload" in commands and fleet_settings(config).uploads:  # its own process: never holds up the others
        children.append(Child("fleet-upload", scb + ["fleet-upload"], logs / "fleet-upload.log"))
    from settlement.settings import settlement_settings

    # the demo households pay from the development accounts: on the embedded chain's demo system only (not for a
    # system or holders an operator configured)
    demo = settlement_settings(config)
    if "demo-households" in commands and eth.embedded and demo.system_id is None and not demo.holders:
        children.append(Child("demo-households", scb + ["demo-households"], logs / "demo-households.log"))
    from home_assistant.settings import mqtt_enabled

    if "home-assistant" in commands and mqtt_enabled(config):
        children.append(Child("home-assistant", scb + ["home-assistant"], logs / "home-assistant.log"))
    return children


def process_file(data_dir: Path) -> Path:
    return data_dir / "run" / "processes.json"


def write_process_file(data_dir: Path, children: list[Child]) -> None:
    """Where each process runs and how it fares, for `scb status`: rewritten whenever a state changes."""
    table = {"supervisor": os.getpid(), "written_at": time.time(), "processes": [c.row() for c in children]}
    atomic_write(process_file(data_dir), (json.dumps(table, indent=2) + "\n").encode(), mode=0o644)


def alive(pid: object) -> bool:
    """True if `pid` is a running process (a zombie, exited but not reaped, is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def process_status(data_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The processes of the last `scb run` in this data directory, each with `running` checked now and its
    heartbeat (age in seconds, loops) when it writes one."""
    try:
        table = json.loads(process_file(data_dir).read_text())
    except (OSError, ValueError):
        table = {}
    now = time.time() if now is None else now
    beats = read_heartbeats(data_dir)
    running_supervisor = alive(table.get("supervisor"))
    out: list[dict[str, Any]] = []
    for proc in table.get("processes", []):
        if not isinstance(proc, dict):
            continue
        row = {**proc, "running": running_supervisor and alive(proc.get("pid"))}
        if not running_supervisor:
            row["state"] = STOPPED
        beat = beats.get(str(proc.get("name")))
        if beat is not None and beat.get("pid") == proc.get("pid"):
            row["heartbeat_age_s"] = round(now - float(beat["beat"]), 1)
            row["loops"] = beat.get("loops", {})
        out.append(row)
    # processes that beat without `scb run` (systemd units, one started by hand)
    listed = {p.get("name") for p in out}
    for name, beat in beats.items():
        if name not in listed and alive(beat.get("pid")):
            out.append({"name": name, "pid": beat.get("pid"), "state": RUNNING, "running": True,
                        "supervised": False, "heartbeat_age_s": round(now - float(beat["beat"]), 1),
                        "loops": beat.get("loops", {})})
    return out
