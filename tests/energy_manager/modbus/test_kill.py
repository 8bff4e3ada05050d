"""kill -9 of `scb energy-manager` while it polls Modbus meters: nothing committed is lost, nothing is stored
twice, and the deltas recomputed from the stored registers are the stored ones."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from energy_manager.models import StoredReading
from energy_manager.registers import RegisterState, energy_delta
from scb.db import make_engine, make_sessionmaker
from tests.energy_manager.modbus.meter_sim import MeterServer, sdm630_tcp_devices
from tests.energy_manager.modbus.test_tcp import sdm630
from tests.energy_manager.test_service import Run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
MAX_POWER_W = 30000.0


class RealTimeRun(Run):
    """`scb energy-manager` on the real-time clock (real meters), with its stderr collected."""

    def __init__(self, data_dir: Path) -> None:  # noqa: D107 - the parent's, without the accelerated clock
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
        env.update({"SCB_DATA_DIR": str(data_dir), "SCB_LOG_LEVEL": "DEBUG"})
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "energy-manager"], cwd=data_dir, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def config(port: int) -> str:
    devices_and_meters = sdm630_tcp_devices(port, (1, 2), poll_interval_s=0.05)
    return (f"[energy]\nclock_speed = 1\nsample_interval_s = 0.2\npublish_window_s = 2\n"
            f"max_power_w = {MAX_POWER_W}\n{devices_and_meters}")


def test_kill_9_while_polling_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = MeterServer({1: sdm630(10.0, 500.0), 2: sdm630(20.0, 800.0)}).start_tcp()
    stop = threading.Event()

    def meters_count() -> None:  # the meters keep counting, 1 Wh per 50 ms each (72 W)
        wh = {1: 10_000, 2: 20_000}
        while not stop.wait(0.05):
            for u in wh:
                wh[u] += 1
                server.units[u].put("input", 0x48, "float32", "high_first", wh[u] / 1000)

    counter = threading.Thread(target=meters_count, daemon=True)
    counter.start()
    (tmp_path / "scb.toml").write_text(config(server.port))
    rng = random.Random(11)
    reported: dict[str, int] = {}
    try:
        for _ in range(4):
            run = RealTimeRun(tmp_path)
            run.wait_commits(2)
            time.sleep(rng.uniform(0.05, 0.6))
            run.proc.send_signal(signal.SIGKILL)
            assert run.finish() == -signal.SIGKILL
            for c in run.committed():
                for meter, seq in c["seq"].items():
                    reported[meter] = max(reported.get(meter, 0), seq)
            assert "Traceback" not in run.text
        final = RealTimeRun(tmp_path)
        final.wait_commits(3)
        final.proc.send_signal(signal.SIGTERM)
        assert final.finish() == 0
        assert "Traceback" not in final.text
    finally:
        stop.set()
        counter.join(5)
        server.stop()

    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    try:
        with make_sessionmaker(engine)() as s:
            rows = list(s.execute(select(StoredReading).order_by(StoredReading.meter, StoredReading.seq)).scalars())
    finally:
        engine.dispose()
    by_meter: dict[str, list[StoredReading]] = {}
    for r in rows:
        by_meter.setdefault(r.meter, []).append(r)
    assert sorted(by_meter) == ["h1", "h2"] and set(reported) == {"h1", "h2"}
    for meter, rs in by_meter.items():
        assert [r.seq for r in rs] == list(range(1, len(rs) + 1)), f"{meter}: sequence numbers not contiguous"
        assert rs[-1].seq >= reported[meter], f"{meter}: a reading reported committed is missing"
        assert len({r.ts_ms for r in rs}) == len(rs)  # no sample stored twice
        prev: RegisterState | None = None
        for r in rs:  # the stored deltas are what the reset and gap rules give for the stored registers
            expected = energy_delta(prev, r.ts_ms, r.register_wh, max_power_w=MAX_POWER_W, gap_after_ms=600)
            assert (r.delta_wh, r.flags) == (expected.delta_wh, expected.flags_text)
            assert "reset" not in r.flags  # the meters only count up
            prev = RegisterState(r.ts_ms, r.register_wh)
