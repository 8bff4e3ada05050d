"""Answers pymodbus's server never gives, from a raw RTU responder on a pty: another unit answering and a
corrupted CRC are counted as their own kinds ("wrong_unit", "crc"), not as timeouts, logged with the raw frame,
and the other meter on the bus goes on being read."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from energy_manager.drivers.modbus import BAD_VALUE, CRC, TIMEOUT, WRONG_UNIT, Link, ModbusDevice
from energy_manager.models import InputCounter, StoredReading
from energy_manager.modbus import frames
from energy_manager.modbus.profiles import custom_profile, load_profile
from energy_manager.monitor import EnergyMonitor
from energy_manager.service import build_device
from energy_manager.settings import load_energy_settings
from hub.cli import main
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from tests.energy_manager.modbus.meter_sim import Unit
from tests.energy_manager.modbus.raw_rtu import RawResponder, crc16_modbus, registers_answer, with_crc
from tests.energy_manager.modbus.test_rtu import sdm120
from tests.energy_manager.modbus.test_tcp import Collect, wait_for

pytestmark = pytest.mark.timeout(120)


class Bus:
    """Two SDM120s, units 1 and 2; `mode[unit]` says how a unit answers: "good", "wrong_unit" (as unit 7),
    "bad_crc" (the right frame, its CRC's low byte flipped), "noise" (bytes that are no frame), "late" (each
    answer is the one to the request before) or "late_once" (the request for `late_address` is answered once,
    `slow_s` later, then the unit is good again)."""

    def __init__(self) -> None:
        self.units = {1: sdm120(1.5, 100.0), 2: sdm120(2.5, 200.0)}
        self.mode = {1: "good", 2: "good"}
        self.previous: bytes | None = None
        self.slow_s = 0.0
        self.late_address = 0
        self.responder = RawResponder(self.answer)

    def answer(self, unit: int, function: int, address: int, count: int) -> bytes | None:
        if unit not in self.units or function not in (3, 4):
            return None
        table = self.units[unit].input if function == 4 else self.units[unit].holding
        registers = [table.get(a, 0) for a in range(address, address + count)]
        mode = self.mode[unit]
        if mode == "wrong_unit":
            return with_crc(registers_answer(7, function, registers))
        frame = with_crc(registers_answer(unit, function, registers))
        if mode == "bad_crc":
            return frame[:-2] + bytes([frame[-2] ^ 0x5A, frame[-1]])
        if mode == "noise":
            return b"\x00\xff\x13\x37\x00"
        if mode == "late_once" and address == self.late_address:  # once after the driver gave up
            self.mode[unit] = "good"
            time.sleep(self.slow_s)
            return frame
        if mode == "late":  # each answer is the one to the request before
            previous, self.previous = self.previous, frame
            return previous
        return frame


@pytest.fixture()
def bus() -> Iterator[Bus]:
    b = Bus()
    yield b
    b.responder.close()


def meter(bus: Bus, unit: int) -> ModbusDevice:
    return ModbusDevice(f"h{unit}", Link("rtu", serial_port=bus.responder.path, baud=9600), unit,
                        load_profile("sdm120"), timeout_s=0.5, poll_interval_s=0.05, retry_min_s=0.05,
                        retry_max_s=0.2)


def run_bad_unit(bus: Bus, mode: str, kind: str) -> tuple[Collect, Collect]:
    """Both meters read well, then unit 2 answers in `mode` until it has `kind` events three times, then well
    again. Returns both collections; unit 1 must have gone on being read throughout."""
    devices = [meter(bus, 1), meter(bus, 2)]
    h1, h2 = (Collect(d) for d in devices)
    for d in devices:
        d.open()
    try:
        wait_for(lambda: (h1(), h2(), h1.samples and h2.samples)[2], timeout=30)
        bus.mode[2] = mode
        wait_for(lambda: (h1(), h2(), h2.kinds().count(kind) >= 3)[2], timeout=30)
        n1, n2 = len(h1.samples), len(h2.samples)
        wait_for(lambda: (h1(), len(h1.samples) > n1 + 2)[1], timeout=30)  # unit 1 undisturbed
        assert len(h2.samples) <= n2 + 1  # at most the frame taken before the switch
        bus.mode[2] = "good"
        wait_for(lambda: (h1(), h2(), len(h2.samples) > n2 + 1)[2], timeout=30)  # unit 2 back
    finally:
        for d in devices:
            d.close()
    assert h2.samples[-1].values["import_wh"] == 2500.0
    assert h1.samples[-1].values["import_wh"] == 1500.0
    # (a timeout is the one thing a loaded test machine may add: an answer later than timeout_s)
    assert {e.kind for e in h1.events} <= {TIMEOUT}, [e.detail for e in h1.events]
    return h1, h2


def test_the_tests_crc_is_crc16_modbus() -> None:
    # the catalogue's check value (CRC-16/MODBUS of "123456789") and a request from the specification's example
    assert crc16_modbus(b"123456789") == 0x4B37
    assert with_crc(bytes.fromhex("010400000002")) == bytes.fromhex("01040000000271cb")


def test_a_wrong_unit_answering_is_counted_as_such(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="energy_manager.modbus")
    _, h2 = run_bad_unit(bus, "wrong_unit", WRONG_UNIT)
    bad = [e for e in h2.events if e.kind == WRONG_UNIT]
    assert {e.kind for e in h2.events} <= {WRONG_UNIT, TIMEOUT}, h2.kinds()  # counted as its own kind
    assert "unit 7 answered a request to unit 2" in bad[0].detail
    assert bad[0].raw is not None
    frame = bytes.fromhex(bad[0].raw.decode())
    assert frame[0] == 7 and frame[1] == 4
    assert crc16_modbus(frame[:-2]).to_bytes(2, "little") == frame[-2:]  # the sound frame, as it came
    logged = [r.getMessage() for r in caplog.records if "unit 7 answered" in r.getMessage()]
    assert logged and bad[0].raw.decode() in logged[0]  # logged with the raw frame


def test_a_corrupted_crc_is_counted_as_crc_not_timeout(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="energy_manager.modbus")
    _, h2 = run_bad_unit(bus, "bad_crc", CRC)
    bad = [e for e in h2.events if e.kind == CRC]
    assert {e.kind for e in h2.events} <= {CRC, TIMEOUT}, h2.kinds()
    assert bad[0].raw is not None
    frame = bytes.fromhex(bad[0].raw.decode())
    assert frame[0] == 2 and frame[1] == 4 and len(frame) == 5 + frame[2]
    assert crc16_modbus(frame[:-2]).to_bytes(2, "little") != frame[-2:]
    assert any(bad[0].raw.decode() in r.getMessage() for r in caplog.records)


def test_noise_on_the_line_is_counted_as_crc(bus: Bus) -> None:
    _, h2 = run_bad_unit(bus, "noise", CRC)
    assert {e.kind for e in h2.events} <= {CRC, TIMEOUT}, h2.kinds()
    assert next(e for e in h2.events if e.kind == CRC).raw == b"00 ff 13 37 00"


def test_a_late_answer_to_the_request_before_is_never_taken(bus: Bus) -> None:
    # unit 2's two requests (input registers 0..13 and 70..75) are each answered with the other's registers
    h1, h2 = run_bad_unit(bus, "late", BAD_VALUE)
    assert {e.kind for e in h2.events} <= {BAD_VALUE, TIMEOUT}, h2.kinds()
    details = [e.detail for e in h2.events if e.kind == BAD_VALUE]
    assert any("14 registers in the answer for input registers 70..75 of unit 2, not 6" in d for d in details)
    assert all(s.values["import_wh"] == 2500.0 for s in h2.samples)  # no register's value taken for another's


def test_one_late_answer_does_not_shift_the_answers_that_follow(bus: Bus) -> None:
    # two blocks of the same size: an answer one request late fits the request after it, and a meter that is
    # late once and then answers each request at once would be one answer behind for ever
    unit = Unit()
    unit.put("holding", 0x0010, "int32", "high_first", -1500)       # power_w
    unit.put("holding", 0x0100, "uint32", "high_first", 1_234_567)  # import_wh
    bus.units[1] = unit
    bus.slow_s = 0.75  # the driver waits 0.5 s, then 0.5 s quiet: the answer comes in the middle of it
    bus.late_address = 0x0100  # the second block: the request after it is the first block of the next poll
    profile = custom_profile("energy.devices.dds.registers", {
        "power_w": {"address": 0x0010, "function": "holding", "type": "int32"},
        "import_wh": {"address": 0x0100, "function": "holding", "type": "uint32"}})
    assert [b.count for b in profile.blocks] == [2, 2]
    d = ModbusDevice("dds", Link("rtu", serial_port=bus.responder.path), 1, profile, timeout_s=0.5,
                     poll_interval_s=0.05, retry_min_s=0.05, retry_max_s=0.2)
    kept: list[dict[str, float]] = []  # every frame the driver keeps, not only those a sample happens to take
    put = d._latest.put
    d._latest.put = lambda ts, values, raw: (kept.append(dict(values)), put(ts, values, raw))[1]  # type: ignore
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.samples)[1], timeout=30)
        bus.mode[1] = "late_once"
        wait_for(lambda: (seen(), TIMEOUT in seen.kinds())[1], timeout=30)
        n = len(kept)
        wait_for(lambda: (seen(), len(kept) > n + 5)[1], timeout=30)
    finally:
        d.close()
    assert {(v["power_w"], v["import_wh"]) for v in kept} == {(-1500.0, 1_234_567.0)}


def test_a_unit_that_says_nothing_is_still_a_timeout(bus: Bus) -> None:
    bus.units.pop(2)
    d = meter(bus, 2)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), len(seen.events) >= 2)[1], timeout=30)
    finally:
        d.close()
    assert {e.kind for e in seen.events} == {TIMEOUT}
    assert all(e.raw is None for e in seen.events)


# -- the verdicts themselves, on crafted buffers (pure) ------------------------------------------------------
ANSWER = with_crc(registers_answer(2, 4, [0x4366, 0x0000]))


def test_verdicts_on_crafted_buffers() -> None:
    wrong = with_crc(registers_answer(9, 4, [1, 2]))
    assert frames.diagnose_rtu([wrong], 2).kind == WRONG_UNIT
    assert frames.diagnose_rtu([b"\x00\x13" + wrong], 2).kind == WRONG_UNIT  # after noise, as pymodbus hunts
    damaged = ANSWER[:4] + bytes([ANSWER[4] ^ 1]) + ANSWER[5:]
    assert frames.diagnose_rtu([damaged], 2).kind == CRC
    assert frames.diagnose_rtu([ANSWER[:5]], 2).kind == CRC  # cut short
    assert frames.diagnose_rtu([ANSWER], 2).kind == TIMEOUT  # sound and ours: it came too late
    assert frames.diagnose_rtu([], 2) == frames.Verdict(TIMEOUT, "no answer from unit 2", b"")
    exception = with_crc(bytes([5, 0x84, 2]))
    assert frames.diagnose_rtu([exception], 2).kind == WRONG_UNIT
    # Modbus TCP: a whole MBAP frame from another unit; a frame of the unit asked is no wrong unit
    tcp = bytes.fromhex("0001 0000 0007 09 04 04 4366 0000".replace(" ", ""))
    assert frames.diagnose_tcp([tcp], 2).kind == WRONG_UNIT
    assert frames.diagnose_tcp([tcp], 9).kind == TIMEOUT
    assert frames.diagnose_tcp([tcp[:9]], 2).kind == TIMEOUT  # incomplete: nothing to tell


def test_crc_check_agrees_with_the_tests_own_crc() -> None:
    for body in (b"\x01\x04\x02\x00\x0a", bytes(range(40)), b"\xff" * 7):
        assert frames.crc_ok(with_crc(body))
        assert not frames.crc_ok(body + (crc16_modbus(body) ^ 0x0100).to_bytes(2, "little"))


# -- through the sampling loop and `scb meters scan` ---------------------------------------------------------
def test_the_sampling_loop_counts_crc_and_wrong_unit_and_goes_on(bus: Bus, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    common = {"driver": "modbus", "transport": "rtu", "serial_port": bus.responder.path, "profile": "sdm120",
              "timeout_s": 0.5, "poll_interval_s": 0.05}
    settings = load_energy_settings(Config(data={"energy": {
        "clock_speed": 1, "publish_window_s": 60,
        "devices": {"m1": {**common, "unit": 1}, "m2": {**common, "unit": 2}},
        "meters": {f"h{u}": {"device": f"m{u}", "circuit": "consumption", "party": f"h{u}",
                             "register": "import_wh", "power": "power_w"} for u in (1, 2)},
    }}))
    devices = {name: build_device(d, settings, 0) for name, d in settings.devices.items()}
    for d in devices.values():
        d.open()
    try:
        mon = EnergyMonitor(settings, factory, devices)

        def counted() -> dict[tuple[str, str], InputCounter]:
            with factory() as s:
                return {(c.source, c.kind): c for c in s.execute(select(InputCounter)).scalars()}

        def tick_until(done: Callable[[], bool]) -> None:
            def step() -> bool:
                time.sleep(0.06)
                assert mon.tick(int(time.time() * 1000)).committed
                return done()
            wait_for(step, timeout=30)

        def readings(meter: str) -> int:
            with factory() as s:
                return len(s.execute(select(StoredReading).where(StoredReading.meter == meter)).scalars().all())

        tick_until(lambda: readings("h1") > 0 and readings("h2") > 0)
        for mode, kind in (("wrong_unit", WRONG_UNIT), ("bad_crc", CRC)):
            bus.mode[2] = mode
            tick_until(lambda kind=kind: ("m2", kind) in counted())  # type: ignore[misc]
            n = readings("h1")
            tick_until(lambda n=n: readings("h1") > n + 1)  # the other meter on the bus goes on
        bus.mode[2] = "good"
        n2 = readings("h2")
        tick_until(lambda: readings("h2") > n2)
    finally:
        for d in devices.values():
            d.close()
    counters = counted()
    assert "unit 7 answered a request to unit 2" in counters[("m2", WRONG_UNIT)].last_detail
    assert "| raw b'07 04 " in counters[("m2", WRONG_UNIT)].last_detail
    assert "bad CRC" in counters[("m2", CRC)].last_detail and "| raw b'02 04 " in counters[("m2", CRC)].last_detail
    assert not any(source == "m1" and kind != TIMEOUT for source, kind in counters)
    with factory() as s:
        h2 = s.execute(select(StoredReading).where(StoredReading.meter == "h2")).scalars().all()
    assert {r.register_wh for r in h2} == {2500}  # nothing from a refused frame was stored


def test_scan_names_a_wrong_unit(bus: Bus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bus.mode[1] = "wrong_unit"
    path = tmp_path / "scb.toml"
    path.write_text(f"""[hub]
data_dir = "{tmp_path / 'data'}"
[energy]
clock_speed = 1
[energy.devices.m1]
driver = "modbus"
transport = "rtu"
serial_port = "{bus.responder.path}"
unit = 1
profile = "sdm120"
timeout_s = 0.5
[energy.meters.h1]
device = "m1"
circuit = "consumption"
party = "h1"
register = "import_wh"
""")
    assert main(["--config", str(path), "meters", "scan", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)["devices"][0]
    assert result["ok"] is False
    assert result["reason"].startswith("wrong_unit: unit 7 answered a request to unit 1")


class RawTcpGateway:
    """A Modbus TCP gateway that answers every request with the right registers but another unit id (as some
    gateways and inverters do when `unit` is set wrong); pymodbus drops such answers as it does over RTU."""

    def __init__(self, answer_unit: int, registers: dict[int, int]) -> None:
        self.answer_unit, self.registers = answer_unit, registers
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.1)
                buffer = b""
                while not self._stop.is_set():
                    try:
                        data = conn.recv(256)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    buffer += data
                    while len(buffer) >= 12:  # MBAP (7) + function, address, count (5)
                        request, buffer = buffer[:12], buffer[12:]
                        address, count = int.from_bytes(request[8:10], "big"), int.from_bytes(request[10:12], "big")
                        body = b"".join(self.registers.get(a, 0).to_bytes(2, "big")
                                        for a in range(address, address + count))
                        pdu = bytes([request[7], len(body)]) + body
                        conn.sendall(request[:4] + (len(pdu) + 1).to_bytes(2, "big") + bytes([self.answer_unit]) + pdu)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


def test_a_wrong_unit_over_tcp_is_counted_as_such() -> None:
    gateway = RawTcpGateway(answer_unit=3, registers=sdm120(1.5, 100.0).input)
    d = ModbusDevice("pv", Link("tcp", host="127.0.0.1", port=gateway.port), 1, load_profile("sdm120"),
                     timeout_s=0.5, poll_interval_s=0.05, retry_min_s=0.05, retry_max_s=0.2)
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.kinds().count(WRONG_UNIT) >= 2)[1], timeout=30)
    finally:
        d.close()
        gateway.close()
    assert seen.samples == []
    assert {e.kind for e in seen.events} <= {WRONG_UNIT, TIMEOUT}, [e.detail for e in seen.events]
    wrong = next(e for e in seen.events if e.kind == WRONG_UNIT)
    assert "unit 3 answered a request to unit 1" in wrong.detail
    assert wrong.raw is not None and bytes.fromhex(wrong.raw.decode())[6] == 3


def test_any_bytes_get_a_verdict_never_an_exception() -> None:
    import random

    rng = random.Random(7)
    for _ in range(2000):
        buffers = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(rng.randrange(4))]
        for verdict in (frames.diagnose_rtu(buffers, rng.randrange(1, 248)),
                        frames.diagnose_tcp(buffers, rng.randrange(1, 248))):
            assert verdict.kind in (TIMEOUT, CRC, WRONG_UNIT)
            assert verdict.raw == b"" or bytes.fromhex(verdict.raw.decode())
