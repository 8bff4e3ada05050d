"""`scb run`: start every process of the hub, each with its own log, and stop them all on Ctrl-C / SIGTERM.

Processes, in start order (ARCHITECTURE.md "Processes"):
1. anvil, the local Ethereum chain (state kept in the data directory) - only when no external RPC is configured;
2. `scb tangle-node` - only when no external IOTA node is configured;
3. `scb energy-manager`, 4. `scb mam-client`, 5. `scb settlement`, 6. `scb dashboard`.
A command this checkout does not have yet is left out. A process that dies is restarted with a growing delay
(a hub runs unattended); the database is the queue between them, so a restart loses nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

from scb.config import Config, load_config
from scb.files import atomic_write

log = logging.getLogger("scb.run")
REPO = Path(__file__).resolve().parent.parent
#: seconds a process gets to stop after SIGTERM before it is killed
STOP_GRACE_S = 20.0
RESTART_MAX_DELAY_S = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file is None:
            self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                     start_new_session=True)
        log.info("started %s (pid %d), log %s", self.name, self.proc.pid, self.log_path)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def available_commands() -> set[str]:
    from scb.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        return set(action.choices)  # type: ignore[arg-type]
    return set()


def plan(config: Config, config_path: str | None) -> list[Child]:
    """The processes this hub runs, from the configuration."""
    logs = config.data_dir / "logs"
    scb = [sys.executable, "-m", "scb.cli"] + (["--config", config_path] if config_path else [])
    commands = available_commands()
    children: list[Child] = []
    eth = config.data.get("ethereum", {})
    if "settlement" in commands and not eth.get("rpc_url"):
        anvil = REPO / "node_modules" / ".bin" / "anvil"
        if not anvil.exists() and shutil.which("anvil") is None:
            from scb.errors import ConfigError

            raise ConfigError("anvil is not installed: run ./start_scb.sh setup, or set [ethereum] rpc_url")
        port = str(eth.get("local_port", 8545))
        children.append(Child("anvil", [str(anvil) if anvil.exists() else "anvil", "--host", "127.0.0.1", "--port",
                                        port, "--state", str(config.data_dir / "anvil-state.json"), "--silent"],
                              logs / "anvil.log"))
    if "tangle-node" in commands and not config.data.get("iota", {}).get("node_url"):
        children.append(Child("tangle-node", scb + ["tangle-node"], logs / "tangle-node.log"))
    for name in ("energy-manager", "mam-client", "settlement", "dashboard"):
        if name in commands:
            children.append(Child(name, scb + [name], logs / f"{name}.log"))
    return children


def process_file(data_dir: Path) -> Path:
    return data_dir / "run" / "processes.json"


def write_process_file(data_dir: Path, children: list[Child]) -> None:
    """Where each process runs, for `scb status` (and operators): rewritten on every start and restart."""
    table = {"supervisor": os.getpid(), "processes": [
        {"name": c.name, "pid": c.proc.pid if c.proc else None, "restarts": c.restarts, "log": str(c.log_path)}
        for c in children]}
    atomic_write(process_file(data_dir), (json.dumps(table, indent=2) + "\n").encode(), mode=0o644)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def process_status(data_dir: Path) -> list[dict[str, object]]:
    """The processes of the last `scb run` in this data directory, each with `running` checked now."""
    try:
        table = json.loads(process_file(data_dir).read_text())
    except (OSError, ValueError):
        return []
    running_supervisor = _alive(table.get("supervisor"))
    out = []
    for proc in table.get("processes", []):
        if isinstance(proc, dict):
            out.append({**proc, "running": running_supervisor and _alive(proc.get("pid"))})
    return out


def first_attached_address(config: Config, engines: dict[str, Engine]) -> str | None:
    """The address of the hub's first attached MAM message, or None (no database, schema or message yet).

    `engines` keeps the one engine between calls: the supervisor asks every two seconds until there is one.
    """
    from sqlalchemy import select

    from mam_client.models import ATTACHED, OutboxMessage
    from scb.db import make_engine

    url = config.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    if url not in engines:
        engines[url] = make_engine(url)
    engine = engines[url]
    try:
        with engine.connect() as conn:
            return conn.scalars(select(OutboxMessage.address).where(OutboxMessage.state == ATTACHED)
                                .order_by(OutboxMessage.id).limit(1)).first()
    except Exception:  # noqa: BLE001 - the schema may not exist yet while the first process starts
        return None


def announce(config: Config, children: list[Child], engines: dict[str, Engine]) -> bool:
    """Print what runs where once the first MAM message is attached; False while there is none yet."""
    address = first_attached_address(config, engines)
    if not address:
        return False
    names = {c.name for c in children}
    data = config.data
    lines = ["", "SCB hub is running:"]
    if "dashboard" in names:
        dash = data.get("dashboard", {})
        lines.append(f"  dashboard      http://{dash.get('host', '127.0.0.1')}:{dash.get('port', 8720)}/")
    mam = data.get("mam", {})
    lines.append(f"  MAM API        http://{mam.get('api_host', '127.0.0.1')}:{mam.get('api_port', 8710)}/channels")
    if "tangle-node" in names:
        node = data.get("tangle_node", {})
        lines.append(f"  tangle node    http://{node.get('host', '127.0.0.1')}:{node.get('port', 14265)}")
    if "anvil" in names:
        lines.append(f"  local chain    http://127.0.0.1:{data.get('ethereum', {}).get('local_port', 8545)}")
    scb = Path(sys.executable).with_name("scb")
    lines += [f"  first MAM message at {address}",
              f"  verify it once its period is settled (see {scb} status):",
              f"    {scb} verify {address}", ""]
    print("\n".join(lines), flush=True)
    return True


def supervise(children: list[Child], stop_after: float | None = None, config: Config | None = None) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for child in children:
        child.start()
        time.sleep(0.5)  # the chain and the node come first; the rest retry until they answer anyway
    started = time.monotonic()
    if config is not None:
        write_process_file(config.data_dir, children)
    announced = config is None
    next_announce_check = 0.0
    engines: dict[str, Engine] = {}
    while not stopping:
        if not announced and time.monotonic() >= next_announce_check:
            announced = announce(config, children, engines)  # type: ignore[arg-type]
            next_announce_check = time.monotonic() + 2.0
            if announced:
                for engine in engines.values():
                    engine.dispose()
        if stop_after is not None and time.monotonic() - started > stop_after:
            break
        for child in children:
            if child.running():
                continue
            now = time.monotonic()
            if child.next_start == 0.0:
                code = child.proc.returncode if child.proc else None
                child.restarts += 1
                delay = min(RESTART_MAX_DELAY_S, 2.0 ** min(child.restarts, 6))
                child.next_start = now + delay
                log.warning("%s exited with code %s; restarting in %.0f s (see %s)", child.name, code, delay,
                            child.log_path)
            elif now >= child.next_start:
                child.next_start = 0.0
                child.start()
                if config is not None:
                    write_process_file(config.data_dir, children)
        time.sleep(0.5)
    log.info("stopping %d processes", len(children))
    for child in reversed(children):
        child.stop()
    deadline = time.monotonic() + STOP_GRACE_S
    for child in reversed(children):
        child.wait_or_kill(deadline)
    log.info("all processes stopped")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the whole hub: every process, with logs under the data directory")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    children = plan(config, args.config)
    print(f"SCB hub {config.hub['id']}: data in {config.data_dir}, logs in {config.data_dir / 'logs'}", flush=True)
    for child in children:
        print(f"  {child.name:<15} {' '.join(child.argv[1:] if child.argv[0] == sys.executable else child.argv)}",
              flush=True)
    print("Ctrl-C stops everything. Waiting for the first MAM message...", flush=True)
    return supervise(children, config=config)
