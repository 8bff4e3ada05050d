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

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from energy_manager.drivers import mqtt
from energy_manager.modbus import config as modbus_config
from energy_manager.reading import CIRCUITS, ID_RE
from energy_manager.simulation import RESERVED_NAMES, CommunityParams
from scb import settings as check
from scb.config import Config
from scb.errors import ConfigError

#: The top-level section this module reads.
SECTIONS: tuple[str, ...] = ("energy",)
ENERGY_DEFAULTS: dict[str, Any] = {
    "hub_id": "",  # empty: [hub].id
    "channel": "readings",
    "sample_interval_s": 60.0,
    "publish_window_s": 300.0,
    "clock_speed": 60.0,
    "start": "auto",  # see DEMO_MORNING_GHI
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
    "modbus": modbus_config.DEFAULTS,  # validated by energy_manager.modbus.config.parse
    "mqtt": mqtt.MQTT_DEFAULTS,  # validated by energy_manager.drivers.mqtt.parse_options
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
#: `start = "auto"` (the embedded default) for the simulated community on an accelerated clock: the first start is
#: the next sunny morning, the moment clear-sky irradiance reaches DEMO_MORNING_GHI (or, on a winter day whose noon
#: gives less, 80 % of noon's) on the first day from now on whose simulated weather (seed, place) stays clear for
#: DEMO_CLEAR_HOURS. Why a morning and not now: a newcomer who starts the demo in the evening would see panels
#: producing nothing, and so bills of nothing, for the first several minutes. Why ahead of now and not a fixed
#: date: an accelerated clock runs ahead of the wall clock anyway, and the contract counts a system's first period
#: from its registration (chain time, which starts at the wall clock), so community time must not start before it.
DEMO_MORNING_GHI = 400.0  # W/m2: the 6 kW demo system then delivers about 2 kW, more than the households draw
DEMO_CLEAR_HOURS = 6
DEMO_CLEAR_FACTOR = 0.85


def demo_start_ms(params: CommunityParams, now_ms: int) -> int:
    """The next sunny morning at or after `now_ms` (see DEMO_MORNING_GHI), to the minute; the first morning at all
    when the simulated weather has no clear one within 60 days."""
    from energy_manager.simulation import DAY_MS, HOUR_MS, STEP_MS, clear_sky_ghi, cloud_factor

    def solar(day_ms: int, hours: float) -> int:  # local solar time on a UTC day -> UTC ms, to the minute
        t = day_ms + int((hours - params.longitude / 15) * HOUR_MS)
        return t - t % STEP_MS

    mornings = []
    for d in range(-1, 62):
        day = now_ms - now_ms % DAY_MS + d * DAY_MS
        want = min(DEMO_MORNING_GHI, 0.8 * clear_sky_ghi(solar(day, 12), params.latitude, params.longitude))
        morning = next(t for t in (solar(day, 5 + q / 12) for q in range(12 * 7 + 1))
                       if clear_sky_ghi(t, params.latitude, params.longitude) >= want)
        if morning >= now_ms:
            mornings.append(morning)
    for morning in mornings:
        if all(cloud_factor(params.seed, morning + h * HOUR_MS) >= DEMO_CLEAR_FACTOR for h in range(DEMO_CLEAR_HOURS)):
            return morning
    return mornings[0]


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


ID_TEXT = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def _ident(key: str, value: Any) -> str:
    return check.string(key, value, pattern=ID_RE, allow_empty=False, expected=ID_TEXT)


def _name(table: str, what: str, name: str) -> None:
    """A device or meter name (a table key, so the error cannot say `table.key must be`)."""
    if ID_RE.fullmatch(name) is None:
        raise ConfigError(f"{what} {check.show(name)} in [{table}] must be {ID_TEXT}")


def _timestamp(key: str, value: Any) -> int | None:
    expected = 'an ISO 8601 date-time such as "2025-06-21T00:00:00Z" (or "" or "now" for now, "auto")'
    if value in ("", "now"):
        return None
    if isinstance(value, datetime):  # a TOML datetime literal
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise check.fail(key, expected, value) from None
    else:
        raise check.fail(key, expected, value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _device(name: str, spec: Any) -> DeviceSettings:
    section = f"energy.devices.{name}"
    _name("energy.devices", "device name", name)
    table = check.table(section, spec)
    driver = check.choice(f"{section}.driver", table.get("driver", ""), tuple(DEVICE_DEFAULTS))
    defaults = DEVICE_DEFAULTS[driver]
    check.known_keys(section, table, defaults)
    options = {**defaults, **table}
    if driver == "serial":
        raw = check.Section(section, options)
        options["port"] = raw.string("port", allow_empty=False,
                                     expected="the serial port's path, e.g. \"/dev/ttyUSB0\"")
        options["baud"] = raw.integer("baud", 50, 4_000_000)
        options["read_timeout_s"] = raw.number("read_timeout_s", 0, 10, low_exclusive=True)
        options["retry_max_s"] = raw.number("retry_max_s", 0, 86_400, low_exclusive=True)
    elif driver == "modbus":
        options = modbus_config.parse(section, options)
    elif driver == "mqtt":
        options = mqtt.parse_options(section, options)
    return DeviceSettings(name=name, driver=driver, options=options)


def _meter(meter_id: str, spec: Any, devices: dict[str, DeviceSettings], max_power_w: float,
           community: CommunityParams) -> MeterSettings:
    section = f"energy.meters.{meter_id}"
    _name("energy.meters", "meter id", meter_id)
    table = check.table(section, spec)
    check.known_keys(section, table, METER_DEFAULTS)
    m = check.Section(section, {**METER_DEFAULTS, **table})
    device = m.choice("device", tuple(sorted(devices)))
    circuit = m.choice("circuit", CIRCUITS)
    party = m["party"] or DEFAULT_PARTY.get(circuit, "")
    if not party:
        raise ConfigError(f"{section}.party must name the holder whose consumption this meter measures (e.g. h1)")
    _ident(m.key("party"), party)
    register = m.string("register", allow_empty=False,
                        expected="the name of the device's cumulative Wh value (e.g. \"E1\")")
    power = m.string("power", expected="the name of the device's power value in W (e.g. \"P1\"), or \"\"")
    limit = m.number("max_power_w", 0, 2**31 - 1) or max_power_w
    if devices[device].driver in ("simulated", "modbus"):
        known = (community.channels() if devices[device].driver == "simulated"
                 else modbus_config.value_names(devices[device].options))
        for key, value in (("register", register), ("power", power)):
            if value and value not in known:
                raise ConfigError(f"{section}.{key}: the {devices[device].driver} device has no value {value!r}; "
                                  f"it has {', '.join(known)}")
    return MeterSettings(meter_id, device, circuit, party, register, power, limit)


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


def _household(key: str, value: str) -> str:
    _ident(key, value)
    if value in RESERVED_NAMES:
        raise ConfigError(f"{key}: {value!r} is reserved for the simulator's own values "
                          f"({', '.join(sorted(RESERVED_NAMES))})")
    return value


def load_energy_settings(config: Config) -> EnergySettings:
    """Validate `[energy]` (and its devices and meters) into EnergySettings; raise ConfigError on any problem."""
    raw = check.read_section(config, "energy", ENERGY_DEFAULTS)
    hub_id = _ident(raw.key("hub_id"), raw["hub_id"]) if raw["hub_id"] else _ident("hub.id", config.hub["id"])
    channel = raw.string("channel", allow_empty=False, max_length=64,
                         expected="a channel name of 1 to 64 characters (one of [mam.channels])")
    interval = raw.number("sample_interval_s", 0.01, 86_400)
    window = raw.number("publish_window_s", interval, 86_400 * 7)
    speed = raw.number("clock_speed", 0, 1_000_000, low_exclusive=True)
    households = raw.string_list("households", item=_household, allow_empty=False, unique=True,
                                 expected='a non-empty list of holder ids such as ["h1", "h2"]')
    community = CommunityParams(
        seed=raw.integer("seed", -(2**63), 2**63 - 1),
        latitude=raw.number("latitude", -90, 90),
        longitude=raw.number("longitude", -180, 180),
        peak_w=raw.number("system_peak_w", 0, 10_000_000),
        households=tuple(households),
    )
    max_power = raw.number("max_power_w", 0, 2**31 - 1, low_exclusive=True)
    gap_after = raw.number("gap_after_s", 0, 86_400 * 366) or 3 * interval
    max_bytes = raw.integer("max_message_bytes", *MESSAGE_BYTES_RANGE)

    devices_raw = raw.table("devices") or {"sim": {"driver": "simulated"}}
    devices = {name: _device(name, value) for name, value in devices_raw.items()}
    modbus_config.check_buses({n: d.options for n, d in devices.items() if d.driver == "modbus"})
    meters_raw = raw.table("meters")
    if not meters_raw:
        if set(devices) != {"sim"} or devices["sim"].driver != "simulated":
            raise ConfigError("[energy.meters] is empty: map each device value to a meter "
                              "(see docs/configuration.md)")
        meters_raw = default_meters(community.households)
    meters = {mid: _meter(mid, value, devices, max_power, community) for mid, value in meters_raw.items()}
    simulated = all(d.driver == "simulated" for d in devices.values())
    start = raw["start"]
    if start == "auto":  # the next clear morning for the simulated community on an accelerated clock, else now
        start_ms = demo_start_ms(community, int(time.time() * 1000)) if simulated and speed != 1 else None
    else:
        start_ms = _timestamp(raw.key("start"), start)
    settings = EnergySettings(
        hub_id=hub_id,
        channel=channel,
        sample_interval_ms=round(interval * 1000),
        publish_window_ms=round(window * 1000),
        clock_speed=speed,
        start_ms=start_ms,
        community=community,
        max_power_w=max_power,
        gap_after_ms=round(gap_after * 1000),
        max_message_bytes=max_bytes,
        devices=devices,
        meters=meters,
    )
    if speed != 1 and not settings.simulated_only:
        raise ConfigError(f"energy.clock_speed must be 1 when real meters are configured (it is {speed:g}); "
                          "an accelerated clock is for the simulated community only")
    return settings
