"""`driver = "modbus"` in [energy.devices]: the settings of issue 11, and errors that name the key."""
from __future__ import annotations

from typing import Any

import pytest

from energy_manager.settings import load_energy_settings
from scb.config import Config
from scb.errors import ConfigError

BUS = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"


def settings(devices: dict[str, Any], meters: dict[str, Any] | None = None):
    meters = meters or {name: {"device": name, "circuit": "consumption", "party": "h1", "register": "import_wh",
                               "power": "power_w"} for name in list(devices)[:1]}
    return load_energy_settings(Config(data={"hub": {}, "energy": {"clock_speed": 1, "devices": devices,
                                                                   "meters": meters}}))


def rtu(unit: int = 1, profile: str = "sdm120", **kw: Any) -> dict[str, Any]:
    return {"driver": "modbus", "transport": "rtu", "serial_port": BUS, "unit": unit, "profile": profile, **kw}


def test_rtu_device_with_defaults() -> None:
    d = settings({"h1": rtu()}).devices["h1"]
    o = d.options
    assert (o["baud"], o["parity"], o["stopbits"], o["bytesize"], o["timeout_s"]) == (9600, "N", 1, 8, 1.0)
    assert o["register_map"].name == "sdm120"


def test_tcp_device_default_port() -> None:
    o = settings({"grid": {"driver": "modbus", "transport": "tcp", "host": "192.168.1.50", "profile": "sdm630",
                           "unit": 126}}, {"grid-import": {"device": "grid", "circuit": "grid_import",
                                                           "register": "import_wh"}}).devices["grid"].options
    assert o["port"] == 502 and o["register_map"].name == "sdm630"


def test_custom_register_table() -> None:
    o = settings({"m": rtu(profile="custom", registers={
        "import_wh": {"address": 0x0156, "type": "float32", "scale": 1000},
        "power_w": {"address": 0x000C},
    })}).devices["m"].options
    assert [f.name for f in o["register_map"].fields] == ["import_wh", "power_w"]


def test_several_units_on_one_bus() -> None:
    s = settings({f"h{i}": rtu(unit=i) for i in range(1, 5)})
    assert sorted(d.options["unit"] for d in s.devices.values()) == [1, 2, 3, 4]


@pytest.mark.parametrize(("devices", "message"), [
    ({"m": {**rtu(), "transport": "usb"}}, 'energy.devices.m.transport must be one of "rtu", "tcp", not "usb"'),
    ({"m": {**rtu(), "serial_port": ""}}, "energy.devices.m.serial_port must be the RS-485 adapter's path"),
    ({"m": rtu(parity="X")}, 'energy.devices.m.parity must be one of "N", "E", "O", not "X"'),
    ({"m": rtu(baud=9600.0)}, "energy.devices.m.baud must be an integer from 300 to 921600, not 9600.0"),
    ({"m": rtu(unit=0)}, "energy.devices.m.unit must be an integer from 1 to 247, not 0"),
    ({"m": rtu(profile="sdm72")}, 'energy.devices.m.profile must be one of "sdm120"'),
    ({"m": rtu(timeout_s=0)}, "energy.devices.m.timeout_s must be a number greater than 0"),
    ({"m": rtu(baudrate=9600)}, "unknown setting energy.devices.m.baudrate"),
    ({"m": rtu(host="10.0.0.1")}, 'energy.devices.m.host is for transport = "tcp"'),
    ({"m": {"driver": "modbus", "transport": "tcp", "host": "", "profile": "sdm630"}}, "energy.devices.m.host must be"),
    ({"m": {"driver": "modbus", "transport": "tcp", "host": "gw", "port": 0, "profile": "sdm630"}},
     "energy.devices.m.port must be an integer from 1 to 65535"),
    ({"m": rtu(registers={"import_wh": {"address": 1}})}, 'energy.devices.m.registers is for profile = "custom"'),
    ({"m": rtu(profile="custom")}, "[energy.devices.m.registers] must name at least one value"),
    ({"m": rtu(profile="custom", registers={"import_wh": {"address": 1, "type": "float"}})},
     "energy.devices.m.registers.import_wh.type must be one of"),
    ({"m": rtu(), "n": rtu(baud=19200, unit=2)},
     "energy.devices.n.baud is 19200 but energy.devices.m.baud on the same serial port is 9600"),
    ({"m": rtu(), "n": rtu()}, "energy.devices.n and energy.devices.m are both unit 1 on the same bus"),
])
def test_errors_name_the_key(devices: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(devices)
    assert message in str(err.value)


def test_a_meter_must_map_a_value_the_profile_has() -> None:
    with pytest.raises(ConfigError, match="energy.meters.h1.register: the modbus device has no value 'E1'"):
        settings({"h1": rtu()}, {"h1": {"device": "h1", "circuit": "consumption", "party": "h1", "register": "E1"}})


def test_sunspec_device_maps_inverter_values() -> None:
    s = settings({"inv": {"driver": "modbus", "transport": "tcp", "host": "10.0.0.7", "unit": 1,
                          "profile": "sunspec"}},
                 {"pv": {"device": "inv", "circuit": "generation", "register": "energy_wh", "power": "power_w"}})
    assert s.devices["inv"].options["register_map"] is None


def test_the_worked_example_in_the_docs_loads() -> None:
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "energy-manager.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if 'profile = "sunspec"' in b)
    s = load_energy_settings(Config(data={"hub": {}, **tomllib.loads(block)}))
    buses = {(d.options["transport"], d.options["serial_port"] or d.options["host"]) for d in s.devices.values()}
    assert len(buses) == 2  # one RS-485 adapter with four units, one TCP device
    assert sorted(d.options["unit"] for d in s.devices.values()) == [1, 11, 12, 13, 240]
    assert {m.id: (m.device, m.register) for m in s.meters.values()} == {
        "pv": ("pv", "export_wh"), "h1": ("h1", "import_wh"), "h2": ("h2", "import_wh"), "h3": ("h3", "import_wh"),
        "grid-import": ("grid", "import_wh"), "grid-export": ("grid", "export_wh")}
