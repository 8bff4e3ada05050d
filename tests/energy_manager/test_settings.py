"""The [energy] section: embedded defaults, the meter map, and errors that name the offending key."""
from __future__ import annotations

from typing import Any

import pytest

from energy_manager.settings import load_energy_settings
from scb.config import Config, load_config
from scb.errors import ConfigError


def settings(energy: dict[str, Any] | None = None, **hub: Any):
    return load_energy_settings(Config(data={"hub": hub, "energy": energy or {}}))


def test_embedded_default_is_the_demo_community() -> None:
    s = settings()
    assert s.hub_id == "scb-demo-hub" and s.channel == "readings"
    assert list(s.devices) == ["sim"] and s.devices["sim"].driver == "simulated"
    assert {m.id: (m.circuit, m.party) for m in s.meters.values()} == {
        "pv": ("generation", "system"),
        "h1": ("consumption", "h1"), "h2": ("consumption", "h2"),
        "h3": ("consumption", "h3"), "h4": ("consumption", "h4"),
        "grid-import": ("grid_import", "grid"), "grid-export": ("grid_export", "grid"),
    }
    assert s.gap_after_ms == 3 * s.sample_interval_ms


def test_households_config_drives_the_default_meters() -> None:
    s = settings({"households": ["casa-1", "casa-2"]})
    assert [m.party for m in s.meters.values() if m.circuit == "consumption"] == ["casa-1", "casa-2"]


def test_environment_overrides(tmp_path) -> None:
    cfg = load_config(environ={"SCB_ENERGY__CLOCK_SPEED": "3600", "SCB_ENERGY__START": "2025-06-21T00:00:00Z",
                               "SCB_ENERGY__HUB_ID": "hub-7", "SCB_DATA_DIR": str(tmp_path)})
    s = load_energy_settings(cfg)
    assert s.clock_speed == 3600 and s.start_ms == 1_750_464_000_000 and s.hub_id == "hub-7"


SERIAL = {"devices": {"emon": {"driver": "serial", "port": "/dev/ttyUSB0"}}, "clock_speed": 1,
          "meters": {"pv": {"device": "emon", "circuit": "generation", "register": "E1", "power": "P1"},
                     "h1": {"device": "emon", "circuit": "consumption", "party": "h1", "register": "E2"}}}


def test_hub_id_errors_name_the_key_that_was_set() -> None:
    with pytest.raises(ConfigError, match=r'^hub\.id must be 1-64 letters.*not "my hub"$'):
        settings(id="my hub")
    with pytest.raises(ConfigError, match=r'^energy\.hub_id must be 1-64 letters.*not "my hub"$'):
        settings({"hub_id": "my hub"})


def test_a_serial_meter_map() -> None:
    s = settings(SERIAL)
    assert s.devices["emon"].options["baud"] == 115200
    assert s.meters["h1"].register == "E2" and s.meters["h1"].power == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sampel_interval_s": 5}, "energy.sampel_interval_s"),
        ({"sample_interval_s": 0}, "energy.sample_interval_s"),
        ({"publish_window_s": 10, "sample_interval_s": 60}, "energy.publish_window_s"),
        ({"clock_speed": 60}, "clock_speed must be 1"),
        ({"hub_id": "my hub"}, "energy.hub_id"),
        ({"latitude": 91}, "energy.latitude"),
        ({"households": ["h1", "h1"]}, "energy.households must not repeat"),
        ({"households": ["pv"]}, "energy.households[0]: 'pv' is reserved"),
        ({"devices": {"emon": {"driver": "modbus"}}}, 'energy.devices.emon.transport must be one of "rtu", "tcp"'),
        ({"devices": {"emon": {"driver": "serial"}}}, "energy.devices.emon.port"),
        ({"devices": {"emon": {"driver": "serial", "port": "/dev/x", "baud": "fast"}}}, "energy.devices.emon.baud"),
        ({"devices": {"emon": {"driver": "serial", "port": "/dev/x", "parity": "N"}}}, "energy.devices.emon.parity"),
        ({"meters": {"h1": {"device": "emon", "circuit": "consumption", "register": "E2"}}}, "party"),
        ({"meters": {"h1": {"device": "nope", "circuit": "generation", "register": "E2"}}}, "energy.meters.h1.device"),
        ({"meters": {"h1": {"device": "emon", "circuit": "battery", "register": "E2"}}}, "energy.meters.h1.circuit"),
        ({"meters": {"h1": {"device": "emon", "circuit": "generation"}}}, "energy.meters.h1.register"),
        ({"meters": {}}, "[energy.meters] is empty"),
        ({"seed": 1.5}, "energy.seed must be an integer"),
        ({"sample_interval_s": True}, "energy.sample_interval_s must be a number from 0.01 to 86400, not true"),
        ({"households": ["h1", 2]}, "energy.households[1] must be a string, not 2"),
        ({"households": "h1"}, 'energy.households must be a non-empty list of holder ids such as ["h1", "h2"]'),
        ({"start": "yesterday"}, 'energy.start must be an ISO 8601 date-time such as "2025-06-21T00:00:00Z"'),
        ({"max_message_bytes": 16000.0}, "energy.max_message_bytes must be an integer from 2000 to 32000, not 16000.0"),
        ({"devices": {"emon": {"driver": "serial", "port": "/dev/x", "baud": 9600.0}}},
         "energy.devices.emon.baud must be an integer from 50 to 4000000, not 9600.0"),
        ({"devices": {"emon": {"driver": "usb"}}}, 'energy.devices.emon.driver must be one of "simulated", "serial"'),
        ({"devices": {"my emon": {"driver": "serial", "port": "/dev/x"}}}, 'device name "my emon" in [energy.devices]'),
        ({"meters": {"h1": {"device": "emon", "circuit": "generation", "register": "E1", "max_power_w": "big"}}},
         'energy.meters.h1.max_power_w must be a number from 0 to 2147483647, not "big"'),
    ],
)
def test_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings({**SERIAL, **change})
    assert message in str(err.value)


def test_simulated_meter_must_use_a_simulator_value() -> None:
    with pytest.raises(ConfigError, match="no value 'E1'"):
        settings({"meters": {"pv": {"device": "sim", "circuit": "generation", "register": "E1"}}})


def test_the_examples_in_the_configuration_docs_load() -> None:
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    blocks = [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[energy" in b]
    assert len(blocks) >= 3
    defaults = load_energy_settings(Config(data=blocks[0]))
    assert defaults == load_energy_settings(Config(data={}))  # the documented values are the embedded defaults
    emontx = load_energy_settings(Config(data=blocks[-1]))
    assert {m.id: (m.register, m.circuit, m.party) for m in emontx.meters.values()} == {
        "pv": ("E1", "generation", "system"), "h1": ("E2", "consumption", "h1"), "h2": ("E3", "consumption", "h2"),
        "grid-import": ("E4", "grid_import", "grid"), "grid-export": ("E5", "grid_export", "grid"),
    }
    device = {**blocks[1]["energy"]["devices"]["emontx"]}
    assert device["driver"] == "serial" and device["baud"] == 115200
