"""Fixtures for the settlement tests: a real anvil per test, and a hub whose energy manager and publisher run
in-process (simulated community, an in-memory tangle) so that periods fill with real readings in milliseconds."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from energy_manager.drivers.simulated import SimulatedDevice
from energy_manager.monitor import EnergyMonitor
from energy_manager.settings import load_energy_settings
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from settlement.chain import ChainClient, connect
from settlement.clock import ChainClock, FixedTime
from settlement.job import Settler
from settlement.logscan import DeploymentStore
from settlement.settings import ethereum_settings, settlement_settings
from settlement.system import SystemRef, resolve_system
from tests.memory_tangle import MemoryTangle
from tests.conftest import REPO, free_port

ANVIL = REPO / "node_modules" / ".bin" / "anvil"
#: 2030-01-01T00:00:00Z: ahead of the wall clock, as an accelerated community clock is
START_MS = 1_893_456_000_000



@dataclass
class Anvil:
    url: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_anvil(port: int | None = None, extra: list[str] | None = None) -> Anvil:
    port = port or free_port()
    proc = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", *(extra or [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return Anvil(url, port, proc)
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("anvil did not start")


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


def iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hub_config(tmp_path: Path, rpc_url: str, start_ms: int = START_MS, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "hub": {"data_dir": str(tmp_path / "data"), "id": "test-hub"},
        "energy": {"households": ["h1", "h2", "h3"], "sample_interval_s": 300, "publish_window_s": 900,
                   "clock_speed": 3600, "start": iso(start_ms)},
        "mam": {"channels": {"readings": {"security": 1}}},
        "ethereum": {"rpc_url": rpc_url},
        "settlement": {"period_s": 3600, "lateness_s": 900,
                       "demo": {"grace_period_s": 7200, "price_per_kwh_wei": 10**15}},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if isinstance(value, dict) and isinstance(data.get(section, {}).get(name), dict):
            data[section][name].update(value)
        else:
            data.setdefault(section, {})[name] = value
    return Config(data=data)


@dataclass
class Hub:
    """An in-process hub: energy monitor + publisher on a memory tangle + settler on a real anvil."""

    config: Config
    factory: Any
    monitor: EnergyMonitor
    publisher: Publisher
    tangle: MemoryTangle
    clock: FixedTime
    client: ChainClient
    system: SystemRef
    settler: Settler
    sample_ms: int
    now_ms: int = START_MS
    extra: dict[str, Any] = field(default_factory=dict)

    def run_until(self, until_ms: int, publish: bool = True) -> None:
        """Sample every interval up to `until_ms` (community time) and publish what closed."""
        t = self.now_ms
        while t <= until_ms:
            self.monitor.tick(t)
            t += self.sample_ms
        self.now_ms = t
        self.clock.value = until_ms
        if publish:
            self.publisher.run_once()

    def settle(self):  # type: ignore[no-untyped-def]
        return self.settler.run(force=True)


def make_hub(tmp_path: Path, rpc_url: str, start_ms: int = START_MS, **overrides: Any) -> Hub:
    config = hub_config(tmp_path, rpc_url, start_ms, **overrides)
    engine = make_engine(config.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    energy = load_energy_settings(config)
    device = SimulatedDevice("sim", energy.community, start_ms)
    monitor = EnergyMonitor(energy, factory, {"sim": device})
    tangle = MemoryTangle()
    publisher = Publisher(factory, mam_settings(config), tangle, tag="SCB")
    publisher.ensure_channels()
    eth = ethereum_settings(config)
    st = settlement_settings(config)
    client = connect(eth)
    client.deployment_store = DeploymentStore(factory)  # as the service does (settlement.service)
    system = resolve_system(config, factory, client, eth, st, energy)
    clock = FixedTime(start_ms)
    settler = Settler(factory, client, system, hub_id=energy.hub_id, period_s=st.period_s,
                      lateness_s=st.lateness_s, clock=clock, chain_clock=ChainClock(client, True),
                      retry_initial_s=st.retry_initial_s, retry_max_s=st.retry_max_s)
    return Hub(config, factory, monitor, publisher, tangle, clock, client, system, settler,
               energy.sample_interval_ms, now_ms=start_ms)


@pytest.fixture
def hub(tmp_path: Path, anvil: Anvil) -> Hub:
    return make_hub(tmp_path, anvil.url)


def write_toml(config: Config, path: Path) -> Path:
    """The test configuration as a TOML file, for commands run as a user would (subprocesses)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(v)

    lines: list[str] = []

    def table(name: str, data: dict[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in data.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for name, data in config.data.items():
        table(name, data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
