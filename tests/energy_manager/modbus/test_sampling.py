"""Modbus meters through the sampling loop: readings from SDM and EM meters over TCP, bad input counted in
energy_counters, and a register that goes down (a replaced meter) stored as a reset, never negative energy."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes
from sqlalchemy import select

from energy_manager.models import InputCounter, StoredReading
from energy_manager.monitor import EnergyMonitor
from energy_manager.service import build_device
from energy_manager.settings import load_energy_settings
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from tests.energy_manager.modbus.meter_sim import MeterServer, Unit
from tests.energy_manager.modbus.test_tcp import sdm630, wait_for

pytestmark = pytest.mark.timeout(90)


def em340(import_kwh_x10: int, power_w_x10: int) -> Unit:
    unit = Unit()
    unit.put("holding", 0x0028, "int32", "low_first", power_w_x10)
    unit.put("holding", 0x0034, "int32", "low_first", import_kwh_x10)
    return unit


def test_readings_counters_and_a_replaced_meter(tmp_path: Path) -> None:
    server = MeterServer({1: sdm630(100.0, -1500.0), 2: em340(5000, 12345)}).start_tcp()
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    common = {"driver": "modbus", "transport": "tcp", "host": "127.0.0.1", "port": server.port, "timeout_s": 0.3,
              "poll_interval_s": 0.05}
    settings = load_energy_settings(Config(data={"energy": {
        "clock_speed": 1, "publish_window_s": 60,
        "devices": {"pv": {**common, "unit": 1, "profile": "sdm630"},
                    "h1": {**common, "unit": 2, "profile": "em340"}},
        "meters": {"pv": {"device": "pv", "circuit": "generation", "register": "import_wh", "power": "power_w"},
                   "h1": {"device": "h1", "circuit": "consumption", "party": "h1", "register": "import_wh",
                          "power": "power_w"}},
    }}))
    devices = {name: build_device(d, settings, 0) for name, d in settings.devices.items()}
    for d in devices.values():
        d.open()
    try:
        wait_for(lambda: all(d.polls for d in devices.values()))  # type: ignore[attr-defined]
        mon = EnergyMonitor(settings, factory, devices)

        def tick_until(meter: str) -> None:
            def step() -> bool:
                time.sleep(0.06)
                report = mon.tick(int(time.time() * 1000))
                assert report.committed
                return any(r.meter == meter for r in report.readings)
            wait_for(step)

        tick_until("pv")
        server.units[1].put("input", 0x48, "float32", "high_first", 100.5)  # +500 Wh
        tick_until("pv")
        server.units[2].exception = ExcCodes.DEVICE_BUSY
        wait_for(lambda: (mon.tick(int(time.time() * 1000)), devices["h1"].events._items or True)[1])
        time.sleep(0.3)
        server.units[2].exception = None
        server.units[1].put("input", 0x48, "float32", "high_first", 0.25)  # the meter was replaced: 250 Wh
        tick_until("pv")
        tick_until("h1")
        mon.tick(int(time.time() * 1000))
    finally:
        for d in devices.values():
            d.close()
        server.stop()
    with factory() as s:
        pv = s.execute(select(StoredReading).where(StoredReading.meter == "pv")
                       .order_by(StoredReading.seq)).scalars().all()
        h1 = s.execute(select(StoredReading).where(StoredReading.meter == "h1")).scalars().all()
        counters = {(c.source, c.kind): c for c in s.execute(select(InputCounter)).scalars()}
    registers = [r.register_wh for r in pv]
    assert registers[0] == 100_000 and 100_500 in registers and registers[-1] == 250
    assert [r.seq for r in pv] == list(range(1, len(pv) + 1))
    assert all(r.delta_wh >= 0 for r in pv)
    replaced = next(r for r in pv if r.register_wh == 250)
    assert "reset" in replaced.flags and replaced.power_w == -1500
    assert {r.register_wh for r in h1} == {500_000} and {r.power_w for r in h1} == {1234}  # 1234.5 W rounded
    assert counters[("h1", "modbus_exception")].count >= 1
    assert "exception 6 (server device busy)" in counters[("h1", "modbus_exception")].last_detail
