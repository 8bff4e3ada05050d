"""SunSpec: discovery at each base address, the model chain, scale factors and "not implemented" values; the
register contents laid out as the SunSpec information model specifies (words computed by hand)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pymodbus.constants import ExcCodes

from energy_manager.drivers.modbus import MODBUS_EXCEPTION, NOT_SUNSPEC, Link, ModbusDevice, SunSpecReader, read_once
from energy_manager.modbus import sunspec
from tests.energy_manager.modbus.meter_sim import MeterServer, Unit
from tests.energy_manager.modbus.test_tcp import Collect, wait_for

pytestmark = pytest.mark.timeout(60)


def ascii_words(text: str, count: int) -> list[int]:
    raw = text.encode("ascii").ljust(count * 2, b"\0")
    return [int.from_bytes(raw[i: i + 2], "big") for i in range(0, count * 2, 2)]


def common() -> list[int]:
    data = [0] * 66
    data[0:16] = ascii_words("Fronius", 16)
    data[16:32] = ascii_words("Smart Meter 63A", 16)
    data[40:48] = ascii_words("1.2", 8)
    data[48:64] = ascii_words("SN-0042", 16)
    return [1, 66, *data]


def meter_203() -> list[int]:
    data = [0x8000] * 105  # everything "not implemented" unless set
    data[4] = 0x8000       # A_SF not implemented: current left out
    data[6], data[13] = 2301, 0xFFFF       # PhVphA 2301, V_SF -1 -> 230.1 V
    data[14], data[15] = 5000, 0xFFFE      # Hz 5000, Hz_SF -2 -> 50.0 Hz
    data[16], data[20] = 0xFA24, 0         # W -1500, W_SF 0 -> exporting 1500 W
    data[36:38] = [0x0000, 0x0007]         # TotWhExp 7
    data[44:46] = [0x0001, 0xE240]         # TotWhImp 123456
    data[52] = 1                           # TotWh_SF 1 -> x10
    return [203, 105, *data]


def inverter_103() -> list[int]:
    data = [0] * 50
    data[0], data[4] = 0xFFFF, 0           # A not implemented
    data[8], data[11] = 2300, 0xFFFF       # 230.0 V
    data[12], data[13] = 3000, 0           # 3000 W
    data[14], data[15] = 4999, 0xFFFE      # 49.99 Hz
    data[22:24] = [0x0098, 0x9680]         # WH 10 000 000
    data[24] = 0
    return [103, 50, *data]


def chain(*models: list[int]) -> list[int]:
    return [*sunspec.MARKER, *[w for m in models for w in m], 0xFFFF, 0]


def sunspec_unit(base: int, *models: list[int]) -> Unit:
    unit = Unit()
    unit.words("holding", base, chain(*models))
    return unit


def test_discover_with_a_plain_reader() -> None:
    registers = dict(enumerate(chain(common(), meter_203()), start=40000))

    async def read(address: int, count: int) -> list[int]:
        if address not in registers:
            raise sunspec.AddressRefused(f"no register {address}")
        return [registers.get(a, 0) for a in range(address, address + count)]

    base, models = asyncio.run(sunspec.discover(read))
    assert base == 40000
    assert [(m.id, m.address, m.length) for m in models] == [(1, 40004, 66), (203, 40072, 105)]
    assert sunspec.decode_common(common()[2:]) == {"manufacturer": "Fronius", "model": "Smart Meter 63A",
                                                   "version": "1.2", "serial": "SN-0042"}


def test_meter_scale_factors_and_not_implemented() -> None:
    values = sunspec.decode_meter(meter_203()[2:])
    assert values == pytest.approx({"voltage_v": 230.1, "frequency_hz": 50.0, "power_w": -1500.0,
                                    "import_wh": 1_234_560.0, "export_wh": 70.0})
    assert "current_a" not in values


def test_inverter() -> None:
    assert sunspec.decode_inverter(inverter_103()[2:]) == pytest.approx(
        {"voltage_v": 230.0, "power_w": 3000.0, "frequency_hz": 49.99, "energy_wh": 10_000_000.0})


def test_a_short_model_and_no_energy_model_are_refused() -> None:
    with pytest.raises(sunspec.NotSunSpec, match="model 203 at 5 has 20 registers, not 105"):
        sunspec.energy_model([sunspec.Model(203, 5, 20)])
    with pytest.raises(sunspec.NotSunSpec, match="no inverter .* or meter .* model in the chain .models: 1."):
        sunspec.energy_model([sunspec.Model(1, 5, 66)])


@pytest.mark.parametrize("base", [40000, 50000, 0])
def test_discovery_at_each_base_address_over_tcp(base: int) -> None:
    server = MeterServer({126: sunspec_unit(base, common(), meter_203())},
                         ranges=((base, 300),)).start_tcp()
    try:
        reader = SunSpecReader()
        values, raw = read_once(Link("tcp", host="127.0.0.1", port=server.port), 126, reader, 1.0)
    finally:
        server.stop()
    assert values["import_wh"] == pytest.approx(1_234_560.0) and values["power_w"] == -1500.0
    assert reader.details == {"base": base, "models": [1, 203], "manufacturer": "Fronius",
                              "model": "Smart Meter 63A", "version": "1.2", "serial": "SN-0042"}
    assert f"{base + 72}:".encode() in raw


@pytest.fixture()
def inverter() -> Iterator[MeterServer]:
    server = MeterServer({1: sunspec_unit(40000, common(), inverter_103())}, ranges=((40000, 200),)).start_tcp()
    yield server
    server.stop()


def test_an_inverter_polled_by_the_driver(inverter: MeterServer) -> None:
    d = ModbusDevice("pv", Link("tcp", host="127.0.0.1", port=inverter.port), 1, None, timeout_s=0.5,
                     poll_interval_s=0.05, retry_min_s=0.05, retry_max_s=0.2, reader=SunSpecReader())
    seen = Collect(d)
    d.open()
    try:
        wait_for(lambda: (seen(), seen.samples)[1])
        # the inverter is replaced: while it boots it refuses every address, then its chain is found again
        inverter.units[1].exception = ExcCodes.ILLEGAL_ADDRESS
        wait_for(lambda: (seen(), {MODBUS_EXCEPTION, NOT_SUNSPEC} <= set(seen.kinds()))[1])
        inverter.units[1].exception = None
        n = len(seen.samples)
        wait_for(lambda: (seen(), len(seen.samples) > n)[1])
    finally:
        d.close()
    assert seen.samples[0].values["energy_wh"] == 10_000_000.0 and seen.samples[0].values["power_w"] == 3000.0
