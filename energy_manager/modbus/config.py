"""`[energy.devices.<name>]` with `driver = "modbus"`: the settings, validated (see docs/energy-manager.md).

Kept beside the register maps rather than in `energy_manager.settings` so that settings only dispatches on the
driver; the checks use `scb.settings`, so every error names the full key.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from energy_manager.modbus.profiles import PROFILES, Profile, custom_profile, load_profile
from scb import settings as check
from scb.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "driver": "modbus",
    "transport": "",
    "serial_port": "",
    "baud": 9600,
    "parity": "N",
    "stopbits": 1,
    "bytesize": 8,
    "host": "",
    "port": 502,
    "unit": 1,
    "profile": "",
    "timeout_s": 1.0,
    "poll_interval_s": 1.0,
    "retry_max_s": 30.0,
    "registers": {},
}
#: Settings of the line itself: every device on one serial port must agree on them.
LINE_KEYS = ("baud", "parity", "stopbits", "bytesize")
#: SunSpec's value names (models 1xx inverters, 2xx meters); the discovered models decide which are present.
SUNSPEC_VALUES = ("energy_wh", "power_w", "import_wh", "export_wh", "voltage_v", "current_a", "frequency_hz")


def parse(section: str, options: dict[str, Any]) -> dict[str, Any]:
    """The validated options of one modbus device (`options` has DEFAULTS filled in and no unknown keys)."""
    raw = check.Section(section, options)
    out = dict(options)
    out["transport"] = raw.choice("transport", ("rtu", "tcp"))
    if out["transport"] == "rtu":
        out["serial_port"] = raw.string("serial_port", allow_empty=False,
                                        expected='the RS-485 adapter\'s path, e.g. "/dev/serial/by-id/usb-FTDI_..."')
        out["baud"] = raw.integer("baud", 300, 921_600)
        out["parity"] = raw.choice("parity", ("N", "E", "O"))
        out["stopbits"] = raw.integer("stopbits", 1, 2)
        out["bytesize"] = raw.integer("bytesize", 7, 8)
        for key in ("host",):
            if options[key]:
                raise ConfigError(f"{section}.{key} is for transport = \"tcp\"; this device is \"rtu\"")
    else:
        out["host"] = raw.host("host")
        out["port"] = raw.port("port")
        if options["serial_port"]:
            raise ConfigError(f"{section}.serial_port is for transport = \"rtu\"; this device is \"tcp\"")
    # unit 0 is broadcast (no answer), 248-255 are reserved by the Modbus serial line specification
    out["unit"] = raw.integer("unit", 1, 247)
    out["profile"] = raw.choice("profile", PROFILES)
    out["timeout_s"] = raw.number("timeout_s", 0, 30, low_exclusive=True)
    out["poll_interval_s"] = raw.number("poll_interval_s", 0, 3600, low_exclusive=True)
    out["retry_max_s"] = raw.number("retry_max_s", 0, 86_400, low_exclusive=True)
    registers = raw.table("registers")
    if out["profile"] == "custom":
        out["register_map"] = custom_profile(f"{section}.registers", registers)
    else:
        if registers:
            raise ConfigError(f"{section}.registers is for profile = \"custom\"; "
                              f"profile {out['profile']!r} has its own register map")
        out["register_map"] = None if out["profile"] == "sunspec" else load_profile(out["profile"])
    return out


def value_names(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The device value names a modbus device can report (for checking the meters that map them)."""
    profile: Profile | None = options.get("register_map")
    return tuple(f.name for f in profile.fields) if profile is not None else SUNSPEC_VALUES


def line_key(options: Mapping[str, Any]) -> tuple[str, ...]:
    return (("rtu", options["serial_port"]) if options["transport"] == "rtu"
            else ("tcp", options["host"], str(options["port"])))


def check_buses(devices: Mapping[str, Mapping[str, Any]]) -> None:
    """Devices on one serial port agree on its line settings, and no unit is configured twice on one bus
    (two devices reading one meter would bill its energy twice)."""
    seen: dict[tuple[str, ...], tuple[str, Mapping[str, Any]]] = {}
    units: dict[tuple[Any, ...], str] = {}
    for name, options in devices.items():
        key = line_key(options)
        if options["transport"] == "rtu" and key in seen:
            first, first_options = seen[key]
            for setting in LINE_KEYS:
                if options[setting] != first_options[setting]:
                    raise ConfigError(
                        f"energy.devices.{name}.{setting} is {check.show(options[setting])} but "
                        f"energy.devices.{first}.{setting} on the same serial port is "
                        f"{check.show(first_options[setting])}: one RS-485 bus has one speed and framing")
        seen.setdefault(key, (name, options))
        unit_key = (*key, options["unit"])
        if unit_key in units:
            raise ConfigError(f"energy.devices.{name} and energy.devices.{units[unit_key]} are both unit "
                              f"{options['unit']} on the same bus: each meter is configured once")
        units[unit_key] = name
