"""The `[energy]` configuration section, validated into typed settings (see docs/configuration.md).

Shape::

    [energy]                      # sampling, publishing, the simulated community
    sample_interval_s = 60        # community-clock seconds between samples
    ...
    [energy.devices.<name>]       # things the hub reads: driver = "simulated" | "serial"
    [energy.meters.<id>]          # one register each: device, register key, power key, circuit, party

With no devices and no meters configured, the hub runs the demo community: one simulated device ("sim") and
the meters pv, h1..h4 (one per household in `households`), grid-import and grid-export.
Every error names the offending key, because a typo in a meter map would otherwise bill the wrong household.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from energy_manager.reading import CIRCUITS, ID_RE
from energy_manager.simulation import RESERVED_NAMES, CommunityParams
from scb.config import Config
from scb.errors import ConfigError

ENERGY_DEFAULTS: dict[str, Any] = {
    "hub_id": "",  # empty: [hub].id
    "channel": "readings",
    "sample_interval_s": 60.0,
    "publish_window_s": 300.0,
    "clock_speed": 60.0,
    "start": "",
    "seed": 1,
    "latitude": 40.4168,
    "longitude": -3.7038,
    "system_peak_w": 6000.0,
    "households": ["h1", "h2", "h3", "h4"],
    "max_power_w": 30000.0,
    "gap_after_s": 0.0,  # 0: three sample intervals
    "max_message_bytes": 16000,
    "devices": {},
    "meters": {},
}
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "simulated": {"driver": "simulated"},
    "serial": {"driver": "serial", "port": "", "baud": 115200, "read_timeout_s": 0.5, "retry_max_s": 30.0},
    "modbus": {"driver": "modbus"},
}
METER_DEFAULTS: dict[str, Any] = {
    "device": "",
    "circuit": "",
    "party": "",
    "register": "",
    "power": "",
    "max_power_w": 0.0,  # 0: [energy].max_power_w
}
DEFAULT_PARTY = {"generation": "system", "grid_import": "grid", "grid_export": "grid"}
#: Largest message body: mam_client.outbox takes at most 65536 trytes, 2 per byte.
MESSAGE_BYTES_RANGE = (2_000, 32_000)


@dataclass(frozen=True)
class DeviceSettings:
    name: str
    driver: str
    options: dict[str, Any]


@dataclass(frozen=True)
class MeterSettings:
    """One meter: a register on a device, what it measures (circuit) and for whom (party)."""

    id: str
    device: str
    circuit: str
    party: str
    register: str
    power: str
    max_power_w: float


@dataclass(frozen=True)
class EnergySettings:
    hub_id: str
    channel: str
    sample_interval_ms: int
    publish_window_ms: int
    clock_speed: float
    start_ms: int | None
    community: CommunityParams
    max_power_w: float
    gap_after_ms: int
    max_message_bytes: int
    devices: dict[str, DeviceSettings]
    meters: dict[str, MeterSettings]

    @property
    def simulated_only(self) -> bool:
        return all(d.driver == "simulated" for d in self.devices.values())


def _number(section: str, key: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
            positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{section}.{key} must be a number, not {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{section}.{key} must be greater than 0, not {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{section}.{key} must be at least {minimum}, not {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{section}.{key} must be at most {maximum}, not {value!r}")
    return float(value)


def _integer(section: str, key: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{section}.{key} must be an integer from {minimum} to {maximum}, not {value!r}")
    return value


def _ident(section: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise ConfigError(f"{section}.{key} must be 1-64 characters of letters, digits, '_', '.', '-' "
                          f"starting with a letter or digit, not {value!r}")
    return value


def _timestamp(section: str, key: str, value: Any) -> int | None:
    if value in ("", None):
        return None
    if isinstance(value, datetime):  # a TOML datetime literal
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{section}.{key} must be an ISO 8601 date-time such as "
                              f"2025-06-21T00:00:00Z, not {value!r}") from None
    else:
        raise ConfigError(f"{section}.{key} must be an ISO 8601 date-time, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _table(section: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"[{section}] must be a table")
    return value


def _device(name: str, raw: Any) -> DeviceSettings:
    section = f"energy.devices.{name}"
    _ident("energy.devices", name, name)
    raw = _table(section, raw)
    driver = raw.get("driver", "")
    if driver not in DEVICE_DEFAULTS:
        raise ConfigError(f"{section}.driver must be one of {', '.join(DEVICE_DEFAULTS)}, not {driver!r}")
    if driver == "modbus":
        raise ConfigError(f"{section}: the modbus driver is not available yet (use serial or simulated)")
    defaults = DEVICE_DEFAULTS[driver]
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(f'{section}.{k}' for k in unknown)}; known for driver {driver}: "
                          f"{', '.join(sorted(defaults))}")
    options = {**defaults, **raw}
    if driver == "serial":
        if not isinstance(options["port"], str) or not options["port"]:
            raise ConfigError(f"{section}.port must name the serial port, e.g. /dev/ttyUSB0")
        options["baud"] = _integer(section, "baud", options["baud"], 50, 4_000_000)
        options["read_timeout_s"] = _number(section, "read_timeout_s", options["read_timeout_s"], positive=True,
                                            maximum=10)
        options["retry_max_s"] = _number(section, "retry_max_s", options["retry_max_s"], positive=True)
    return DeviceSettings(name=name, driver=driver, options=options)


def _meter(meter_id: str, raw: Any, devices: dict[str, DeviceSettings], max_power_w: float,
           community: CommunityParams) -> MeterSettings:
    section = f"energy.meters.{meter_id}"
    _ident("energy.meters", meter_id, meter_id)
    raw = _table(section, raw)
    unknown = sorted(set(raw) - set(METER_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(f'{section}.{k}' for k in unknown)}; known: {', '.join(sorted(METER_DEFAULTS))}")
    m = {**METER_DEFAULTS, **raw}
    if m["device"] not in devices:
        raise ConfigError(f"{section}.device must be one of the configured devices "
                          f"({', '.join(sorted(devices))}), not {m['device']!r}")
    if m["circuit"] not in CIRCUITS:
        raise ConfigError(f"{section}.circuit must be one of {', '.join(CIRCUITS)}, not {m['circuit']!r}")
    party = m["party"] or DEFAULT_PARTY.get(m["circuit"], "")
    if not party:
        raise ConfigError(f"{section}.party must name the holder whose consumption this meter measures (e.g. h1)")
    _ident(section, "party", party)
    for key in ("register", "power"):
        if not isinstance(m[key], str):
            raise ConfigError(f"{section}.{key} must be a string (a value key of the device)")
    if not m["register"]:
        raise ConfigError(f"{section}.register must name the device's cumulative Wh value (e.g. E1)")
    limit = _number(section, "max_power_w", m["max_power_w"], minimum=0) or max_power_w
    if devices[m["device"]].driver == "simulated":
        known = set(community.channels())
        for key in ("register", "power"):
            if m[key] and m[key] not in known:
                raise ConfigError(f"{section}.{key}: the simulated device has no value {m[key]!r}; "
                                  f"it has {', '.join(community.channels())}")
    return MeterSettings(meter_id, m["device"], m["circuit"], party, m["register"], m["power"], limit)


def default_meters(households: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The demo community's meters on the simulated device."""
    meters: dict[str, dict[str, Any]] = {
        "pv": {"device": "sim", "circuit": "generation", "register": "pv_wh", "power": "pv_w"},
    }
    for h in households:
        meters[h] = {"device": "sim", "circuit": "consumption", "party": h, "register": f"{h}_wh", "power": f"{h}_w"}
    meters["grid-import"] = {"device": "sim", "circuit": "grid_import", "register": "import_wh", "power": "import_w"}
    meters["grid-export"] = {"device": "sim", "circuit": "grid_export", "register": "export_wh", "power": "export_w"}
    return meters


def load_energy_settings(config: Config) -> EnergySettings:
    """Validate `[energy]` (and its devices and meters) into EnergySettings; raise ConfigError on any problem."""
    raw = config.section("energy", ENERGY_DEFAULTS)
    s = "energy"
    hub_id = _ident(s, "hub_id", raw["hub_id"] or config.hub["id"])
    channel = raw["channel"]
    if not isinstance(channel, str) or not 1 <= len(channel) <= 64:
        raise ConfigError(f"{s}.channel must be a channel name of 1 to 64 characters, not {channel!r}")
    interval = _number(s, "sample_interval_s", raw["sample_interval_s"], minimum=0.01, maximum=86_400)
    window = _number(s, "publish_window_s", raw["publish_window_s"], minimum=interval, maximum=86_400 * 7)
    speed = _number(s, "clock_speed", raw["clock_speed"], positive=True, maximum=1_000_000)
    households = raw["households"]
    if not isinstance(households, list) or not households:
        raise ConfigError(f"{s}.households must be a non-empty list of holder ids such as [\"h1\", \"h2\"]")
    for h in households:
        _ident(s, "households", h)
        if h in RESERVED_NAMES:
            raise ConfigError(f"{s}.households: {h!r} is reserved for the simulator's own values")
    if len(set(households)) != len(households):
        raise ConfigError(f"{s}.households has duplicates")
    community = CommunityParams(
        seed=_integer(s, "seed", raw["seed"], -(2**63), 2**63 - 1),
        latitude=_number(s, "latitude", raw["latitude"], minimum=-90, maximum=90),
        longitude=_number(s, "longitude", raw["longitude"], minimum=-180, maximum=180),
        peak_w=_number(s, "system_peak_w", raw["system_peak_w"], minimum=0, maximum=10_000_000),
        households=tuple(households),
    )
    max_power = _number(s, "max_power_w", raw["max_power_w"], positive=True, maximum=2**31 - 1)
    gap_after = _number(s, "gap_after_s", raw["gap_after_s"], minimum=0) or 3 * interval
    max_bytes = _integer(s, "max_message_bytes", raw["max_message_bytes"], *MESSAGE_BYTES_RANGE)

    devices_raw = _table("energy.devices", raw["devices"]) or {"sim": {"driver": "simulated"}}
    devices = {name: _device(name, value) for name, value in devices_raw.items()}
    meters_raw = _table("energy.meters", raw["meters"])
    if not meters_raw:
        if set(devices) != {"sim"} or devices["sim"].driver != "simulated":
            raise ConfigError("[energy.meters] is empty: map each device value to a meter "
                              "(see docs/configuration.md)")
        meters_raw = default_meters(community.households)
    meters = {mid: _meter(mid, value, devices, max_power, community) for mid, value in meters_raw.items()}
    settings = EnergySettings(
        hub_id=hub_id,
        channel=channel,
        sample_interval_ms=round(interval * 1000),
        publish_window_ms=round(window * 1000),
        clock_speed=speed,
        start_ms=_timestamp(s, "start", raw["start"]),
        community=community,
        max_power_w=max_power,
        gap_after_ms=round(gap_after * 1000),
        max_message_bytes=max_bytes,
        devices=devices,
        meters=meters,
    )
    if speed != 1 and not settings.simulated_only:
        raise ConfigError(f"{s}.clock_speed must be 1 when real meters are configured (it is {speed:g}); "
                          "an accelerated clock is for the simulated community only")
    return settings
