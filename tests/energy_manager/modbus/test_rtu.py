"""The modbus driver over RTU: pymodbus's serial server on one end of a pseudo-terminal "cable", the driver on
the other, and several meters (units) on that one bus."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from energy_manager.drivers.modbus import TIMEOUT, Link, ModbusDevice, devices_on
from energy_manager.drivers.serial_line import RECONNECTED, UNAVAILABLE
from energy_manager.modbus.profiles import load_profile
from tests.energy_manager.modbus.meter_sim import MeterServer, NullModem, Unit
from tests.energy_manager.modbus.test_tcp import Collect, wait_for

pytestmark = pytest.mark.timeout(90)


def sdm120(import_kwh: float, power_w: float) -> Unit:
    unit = Unit()
    unit.words("input", 0x00, [0x4366, 0x0000])  # 230.0 V
    unit.put("input", 0x0C, "float32", "high_first", power_w)
    unit.words("input", 0x46, [0x4248, 0x0000])  # 50.0 Hz
    unit.put("input", 0x48, "float32", "high_first", import_kwh)
    return unit


@pytest.fixture()
def cable() -> Iterator[NullModem]:
    modem = NullModem()
    yield modem
    modem.close()


@pytest.fixture()
def bus(cable: NullModem) -> Iterator[MeterServer]:
    server = MeterServer({1: sdm120(1.5, 100.0), 2: sdm120(2.5, 200.0), 3: sdm120(3.5, -300.0)})
    server.start_rtu(cable.path_meter, 9600)
    yield server
    server.stop()


def household(cable: NullModem, unit: int) -> ModbusDevice:
    return ModbusDevice(f"h{unit}", Link("rtu", serial_port=cable.path_driver, baud=9600), unit,
                        load_profile("sdm120"), timeout_s=0.3, poll_interval_s=0.05, retry_min_s=0.05,
                        retry_max_s=0.2)


def test_one_bus_polls_its_units_in_turn(cable: NullModem, bus: MeterServer) -> None:
    order: list[int] = []  # the unit of each request, in the order the meters saw them
    for unit_id, unit in bus.units.items():

        class Noted(list):
            def append(self, item, unit_id=unit_id) -> None:  # type: ignore[no-untyped-def, override]
                order.append(unit_id)
                super().append(item)

        unit.requests = Noted()
    devices = [household(cable, u) for u in (1, 2, 3)]
    seen = [Collect(d) for d in devices]
    for d in devices:
        d.open()
    try:
        assert len(devices_on(devices[0].link)) == 3  # one bus, three units
        wait_for(lambda: all((c(), len(c.samples) >= 3)[1] for c in seen), timeout=30)
    finally:
        for d in devices:
            d.close()
    assert [c.samples[-1].values["import_wh"] for c in seen] == [1500.0, 2500.0, 3500.0]
    assert [c.samples[-1].values["power_w"] for c in seen] == [100.0, 200.0, -300.0]
    # once all three are on the bus they are asked in turn (each poll is two requests: blocks 0..13, 70..75)
    turns = [u for i, u in enumerate(order) if i == 0 or order[i - 1] != u]
    start = turns.index(3)
    assert turns[start: start + 7] == [3, 1, 2, 3, 1, 2, 3]
    assert all(order[i] == order[i + 1] for i in range(order.index(3), len(order) - 1, 2))
    assert devices_on(devices[0].link) == []


def test_a_unit_that_falls_silent_on_the_bus(cable: NullModem, bus: MeterServer) -> None:
    bus.silence_s = 0.5
    devices = [household(cable, u) for u in (1, 2)]
    seen = [Collect(d) for d in devices]
    for d in devices:
        d.open()
    try:
        wait_for(lambda: all((c(), c.samples)[1] for c in seen), timeout=30)
        bus.silent.add(1)
        wait_for(lambda: (seen[0](), TIMEOUT in seen[0].kinds())[1], timeout=30)
        n = len(seen[1].samples)
        wait_for(lambda: (seen[1](), len(seen[1].samples) > n + 1)[1], timeout=30)
    finally:
        for d in devices:
            d.close()


def test_an_adapter_that_is_unplugged_is_reopened(tmp_path) -> None:
    link_path = tmp_path / "ttyRS485"
    modem = NullModem()
    link_path.symlink_to(modem.path_driver)
    server = MeterServer({1: sdm120(1.5, 100.0)}).start_rtu(modem.path_meter)
    d = ModbusDevice("h1", Link("rtu", serial_port=str(link_path)), 1, load_profile("sdm120"),
                     timeout_s=0.3, poll_interval_s=0.05, retry_min_s=0.05, retry_max_s=0.2)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.samples)[1], timeout=30)
        server.stop()
        modem.close()
        link_path.unlink()  # the adapter's /dev/serial/by-id link disappears
        wait_for(lambda: (seen(), UNAVAILABLE in seen.kinds())[1], timeout=30)
        modem = NullModem()
        server = MeterServer({1: sdm120(1.75, 100.0)}).start_rtu(modem.path_meter)
        link_path.symlink_to(modem.path_driver)
        try:
            wait_for(lambda: (seen(), RECONNECTED in seen.kinds()
                              and seen.samples[-1].values["import_wh"] == 1750.0)[1], timeout=30)
        except AssertionError:
            raise AssertionError(f"{seen.kinds()} {seen.samples[-1].values} {[e.detail for e in seen.events]}")
    finally:
        d.close()
        server.stop()
        modem.close()
