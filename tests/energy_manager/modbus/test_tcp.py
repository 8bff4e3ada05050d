"""The modbus driver over TCP against pymodbus's own server on 127.0.0.1 (no mocks of pymodbus)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from pymodbus.constants import ExcCodes

from energy_manager.drivers.base import DeviceSample, InputEvent
from energy_manager.drivers.modbus import BAD_VALUE, MODBUS_EXCEPTION, TIMEOUT, Link, ModbusDevice
from energy_manager.drivers.serial_line import RECONNECTED, UNAVAILABLE
from energy_manager.modbus.profiles import load_profile
from tests.energy_manager.modbus.meter_sim import MeterServer, Unit

pytestmark = pytest.mark.timeout(60)


def sdm630(import_kwh: float, power_w: float) -> Unit:
    """An SDM630 with its input registers as the manual numbers them (30001 = address 0, float32 high first)."""
    unit = Unit()
    unit.words("input", 0x00, [0x4366, 0x0000])  # 230.0 V
    unit.words("input", 0x06, [0x40A0, 0x0000])  # 5.0 A
    unit.put("input", 0x34, "float32", "high_first", power_w)
    unit.words("input", 0x46, [0x4248, 0x0000])  # 50.0 Hz
    unit.put("input", 0x48, "float32", "high_first", import_kwh)
    unit.words("input", 0x4A, [0x4120, 0x0000])  # 10.0 kWh exported
    return unit


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class Collect:
    """The device's samples and events as the sampling loop would take them."""

    def __init__(self, device: ModbusDevice) -> None:
        self.device = device
        self.samples: list[DeviceSample] = []
        self.events: list[InputEvent] = []

    def __call__(self) -> None:
        sample = self.device.read(0)
        if sample is not None:
            self.samples.append(sample)
        self.events.extend(self.device.take_events())

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture()
def server() -> Iterator[MeterServer]:
    srv = MeterServer({1: sdm630(1234.5, -1500.0), 2: sdm630(2.0, 100.0)}).start_tcp()
    yield srv
    srv.stop()


def device(server: MeterServer, unit: int = 1, name: str = "pv", **kw: float) -> ModbusDevice:
    options = {"timeout_s": 0.3, "poll_interval_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.2, **kw}
    return ModbusDevice(name, Link("tcp", host="127.0.0.1", port=server.port), unit, load_profile("sdm630"),
                        **options)


def test_reads_the_common_value_names(server: MeterServer) -> None:
    d = device(server)
    d.open()
    try:
        sample = wait_for(lambda: d.read(0))
    finally:
        d.close()
    assert sample.values == {"voltage_v": 230.0, "current_a": 5.0, "power_w": -1500.0, "frequency_hz": 50.0,
                             "import_wh": 1234500.0, "export_wh": 10000.0}
    assert b"72:449a 73:5000" in sample.raw
    assert d.read(0) is None or d.read(0) is None  # a frame is returned once


def test_bad_input_is_counted_and_polling_goes_on(server: MeterServer) -> None:
    d = device(server)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.samples)[1])
        server.units[1].exception = ExcCodes.DEVICE_FAILURE
        wait_for(lambda: (seen(), MODBUS_EXCEPTION in seen.kinds())[1])
        server.units[1].exception = None
        server.units[1].words("input", 0x48, [0x7FC0, 0x0000])  # NaN import register
        wait_for(lambda: (seen(), BAD_VALUE in seen.kinds())[1])
        server.units[1].words("input", 0x48, [0x7F80, 0x0000])  # +inf
        before = seen.kinds().count(BAD_VALUE)
        wait_for(lambda: (seen(), seen.kinds().count(BAD_VALUE) > before)[1])
        server.units[1].put("input", 0x48, "float32", "high_first", 1300.0)
        n = len(seen.samples)
        wait_for(lambda: (seen(), len(seen.samples) > n and seen.samples[-1].values["import_wh"] == 1300000.0)[1])
    finally:
        d.close()
    bad = [e for e in seen.events if e.kind == BAD_VALUE]
    assert "import_wh at address 72 is nan" in bad[0].detail and b"72:7fc0" in bad[0].raw
    assert "exception 4 (server device failure)" in next(e.detail for e in seen.events if e.kind == MODBUS_EXCEPTION)
    # no frame with a bad value was kept
    assert all(s.values["import_wh"] in (1234500.0, 1300000.0) for s in seen.samples)


def test_a_silent_unit_times_out_and_the_other_units_go_on(server: MeterServer) -> None:
    server.silence_s = 0.45  # inside the bus's quiet time after a timeout (the next test says why)
    silent, other = device(server, 1, "h1"), device(server, 2, "h2")
    s1, s2 = Collect(silent), Collect(other)
    silent.open()
    other.open()
    try:
        wait_for(lambda: (s1(), s2(), s1.samples and s2.samples)[-1])
        server.silent.add(1)
        wait_for(lambda: (s1(), TIMEOUT in s1.kinds())[1])
        n = len(s2.samples)
        wait_for(lambda: (s2(), len(s2.samples) > n + 2)[1])
        server.silent.discard(1)
        n1 = len(s1.samples)
        wait_for(lambda: (s1(), len(s1.samples) > n1)[1])
    finally:
        silent.close()
        other.close()
    assert s2.samples[-1].values["import_wh"] == 2000.0
    assert "no answer for input registers" in next(e.detail for e in s1.events if e.kind == TIMEOUT)


def test_a_silent_unit_alone_behind_a_gateway_is_timeouts_not_an_outage(server: MeterServer) -> None:
    # pymodbus closes a TCP connection itself after four unanswered requests in a row; the gateway is fine, so
    # the bus connects again at once and counts timeouts only, never `unavailable`
    server.silent.add(1)
    # the late answer comes 0.15 s after the 0.3 s timeout: inside the quiet time of one timeout the bus keeps
    # after a timeout, which is what drops it. 0.6 s sat on that window's edge, and a late answer that comes
    # after it is taken for the next request (pymodbus's server answers with the newest transaction id)
    server.silence_s = 0.45
    d = device(server)
    seen = Collect(d)
    d.open()
    try:
        assert d._bus is not None
        bus = d._bus
        wait_for(lambda: (seen(), bus.connects >= 2 and seen.kinds().count(TIMEOUT) >= 6)[1], timeout=45)
        server.silent.discard(1)
        wait_for(lambda: (seen(), seen.samples)[1], timeout=30)
    finally:
        d.close()
    assert set(seen.kinds()) == {TIMEOUT}, [e.detail for e in seen.events]


def test_an_answer_later_than_the_quiet_time_is_never_stored_as_another_blocks(server: MeterServer) -> None:
    # the limit of that quiet time: an answer 0.15 s after it comes while the next request is out, and
    # pymodbus's server sends it with that request's transaction id. Its register count gives it away, so it
    # is reported as a bad value and nothing from it is stored
    server.silent.add(1)
    server.silence_s = 0.75
    d = device(server)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), BAD_VALUE in seen.kinds())[1], timeout=30)
    finally:
        d.close()
    assert not seen.samples
    assert set(seen.kinds()) == {TIMEOUT, BAD_VALUE}
    assert all("registers in the answer" in e.detail for e in seen.events if e.kind == BAD_VALUE)


def test_a_gateway_that_disappears_is_reconnected(server: MeterServer) -> None:
    d = device(server)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.samples)[1])
        server.stop()
        wait_for(lambda: (seen(), UNAVAILABLE in seen.kinds())[1])
        again = MeterServer(server.units).start_tcp(server.port)
        try:
            n = len(seen.samples)
            wait_for(lambda: (seen(), RECONNECTED in seen.kinds() and len(seen.samples) > n)[1])
        finally:
            again.stop()
    finally:
        d.close()
    assert seen.kinds().count(UNAVAILABLE) == 1  # once per outage, not once per retry


def test_a_bug_in_the_bus_thread_shows_in_read(server: MeterServer) -> None:
    def broken(client: object, unit: int) -> object:
        raise ZeroDivisionError("a decoding bug")

    d = ModbusDevice("pv", Link("tcp", host="127.0.0.1", port=server.port), 1, None, timeout_s=0.3,
                     poll_interval_s=0.05, reader=broken)
    d.open()
    try:
        def raises() -> bool:
            try:
                d.read(0)
            except ZeroDivisionError:
                return True
            return False
        wait_for(raises)
    finally:
        d.close()
