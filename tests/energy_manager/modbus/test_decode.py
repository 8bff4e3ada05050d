"""The decoding core and the shipped register maps, with register words written out as the manuals lay them out
(hex words, computed by hand from IEEE-754 / two's complement, never by the code under test)."""
from __future__ import annotations

import pytest

from energy_manager.modbus.decode import BadValue, Block, Field, decode_block, decode_field, decode_words, plan
from energy_manager.modbus.profiles import SHIPPED, custom_profile, load_profile
from scb.errors import ConfigError

VALUES = ("voltage_v", "current_a", "power_w", "frequency_hz", "import_wh", "export_wh")


def regs(layout: dict[int, list[int]], size: int) -> list[int]:
    out = [0] * size
    for address, words in layout.items():
        out[address: address + len(words)] = words
    return out


def read(profile_name: str, layout: dict[int, list[int]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for block in load_profile(profile_name).blocks:
        registers = regs({a - block.address: w for a, w in layout.items()
                          if block.address <= a < block.address + block.count}, block.count)
        got, errors = decode_block(block, registers)
        assert errors == []
        values.update(got)
    return values


@pytest.mark.parametrize(("type_", "order", "words", "value"), [
    ("float32", "high_first", [0x4366, 0x0000], 230.0),
    ("float32", "high_first", [0x449A, 0x5000], 1234.5),
    ("float32", "high_first", [0xC4BB, 0x8000], -1500.0),
    ("float32", "low_first", [0x5000, 0x449A], 1234.5),
    ("int32", "low_first", [0xCFC7, 0xFFFF], -12345.0),
    ("int32", "high_first", [0xFFFF, 0xCFC7], -12345.0),
    ("uint32", "low_first", [0xE240, 0x0001], 123456.0),
    ("int16", "high_first", [0xFFFE], -2.0),
    ("uint16", "high_first", [0xFFFE], 65534.0),
])
def test_words(type_: str, order: str, words: list[int], value: float) -> None:
    assert decode_words(type_, order, words) == value


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]])
def test_nan_and_infinity_are_refused(words: list[int]) -> None:
    with pytest.raises(BadValue, match="import_wh at address 72"):
        decode_field(Field("import_wh", 72), words)


def test_one_bad_value_does_not_hide_the_others() -> None:
    block = Block("input", 0, 4, (Field("a", 0), Field("b", 2)))
    values, errors = decode_block(block, [0x7FC0, 0, 0x4366, 0])
    assert values == {"b": 230.0} and len(errors) == 1
    values, errors = decode_block(block, [0x4366, 0])
    assert values == {} and "4 registers asked from 0, 2 received" in str(errors[0])


def test_plan_joins_near_fields_and_splits_far_ones() -> None:
    fields = [Field("a", 0), Field("b", 6), Field("c", 52), Field("h", 0, function="holding", type="int16")]
    assert [(b.function, b.address, b.count) for b in plan(fields)] == [
        ("input", 0, 8), ("input", 52, 2), ("holding", 0, 1)]


@pytest.mark.parametrize("name", ["sdm120", "sdm230"])
def test_sdm_single_phase(name: str) -> None:
    # SDM120/230 input registers 30001 (V), 30007 (A), 30013 (W), 30071 (Hz), 30073/30075 (kWh)
    values = read(name, {0x00: [0x4366, 0x0000], 0x06: [0x40A0, 0x0000], 0x0C: [0x448C, 0x0000],
                         0x46: [0x4248, 0x0000], 0x48: [0x449A, 0x5000], 0x4A: [0x4120, 0x0000]})
    assert values == {"voltage_v": 230.0, "current_a": 5.0, "power_w": 1120.0, "frequency_hz": 50.0,
                      "import_wh": 1234500.0, "export_wh": 10000.0}


def test_sdm630_total_power_not_phase_one() -> None:
    # phase 1 power (30013) says 100 W, total system power (30053) -1500 W: the profile reads the total
    values = read("sdm630", {0x00: [0x4366, 0x0000], 0x06: [0x40A0, 0x0000], 0x0C: [0x42C8, 0x0000],
                             0x34: [0xC4BB, 0x8000], 0x46: [0x4248, 0x0000], 0x48: [0x449A, 0x5000],
                             0x4A: [0x0000, 0x0000]})
    assert values["power_w"] == -1500.0 and values["import_wh"] == 1234500.0 and values["export_wh"] == 0.0


@pytest.mark.parametrize("name", ["em24", "em340"])
def test_carlo_gavazzi_low_word_first_with_weights(name: str) -> None:
    # V*10 = 2301, A*1000 = 5250, W*10 = -12345, Hz*10 = 500, kWh*10 = 123456 and 7
    values = read(name, {0x00: [2301, 0], 0x0C: [5250, 0], 0x28: [0xCFC7, 0xFFFF], 0x33: [500],
                         0x34: [0xE240, 0x0001], 0x4E: [7, 0]})
    assert values == pytest.approx({"voltage_v": 230.1, "current_a": 5.25, "power_w": -1234.5,
                                    "frequency_hz": 50.0, "import_wh": 12_345_600.0, "export_wh": 700.0})


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_has_the_common_values(name: str) -> None:
    profile = load_profile(name)
    assert {f.name for f in profile.fields} == set(VALUES)
    assert profile.source and profile.model
    units = {f.name: f.unit for f in profile.fields}
    assert units["import_wh"] == "Wh" and units["power_w"] == "W" and units["frequency_hz"] == "Hz"


def test_custom_table() -> None:
    profile = custom_profile("energy.devices.m.registers", {
        "import_wh": {"address": 0x10, "function": "holding", "type": "uint32", "word_order": "low_first",
                      "scale": 10},
        "power_w": {"address": 0x20, "type": "int16", "function": "holding"},
    })
    fields = {f.name: f for f in profile.fields}
    assert fields["import_wh"].scale == 10.0 and fields["power_w"].type == "int16"
    assert fields["import_wh"].unit == "Wh"


@pytest.mark.parametrize(("table", "message"), [
    ({}, "must name at least one value"),
    ({"import_wh": {"function": "input"}}, "energy.devices.m.registers.import_wh.address is missing"),
    ({"import_wh": {"address": 1, "type": "float64"}}, "energy.devices.m.registers.import_wh.type must be one of"),
    ({"import_wh": {"address": 1, "wordorder": "x"}}, "unknown setting energy.devices.m.registers.import_wh.wordorder"),
    ({"import_wh": {"address": 72, "register": 30072}}, "register 30072 is address 71"),
    ({"import_wh": {"address": -1}}, "import_wh.address must be an integer from 0 to 65534"),
    ({"import wh": {"address": 1}}, 'value name "import wh"'),
    ({"import_wh": {"address": 1, "scale": "1000"}}, "import_wh.scale must be a number"),
])
def test_custom_table_errors_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        custom_profile("energy.devices.m.registers", table)


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="no register map for profile 'sdm999'"):
        load_profile("sdm999")
