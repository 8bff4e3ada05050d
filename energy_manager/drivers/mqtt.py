"""The `mqtt` driver: meters that publish their values to an MQTT broker (Tasmota plugs, Shelly Gen2 meters).

A paho-mqtt 2.x client runs in its own thread (paho's `loop_start`): it subscribes to the device's topics and
keeps, per topic, the newest message that decoded. The sampling loop's `read` merges those into one sample, so
a slow or silent broker never delays the samples of the other meters. Everything that can go wrong with a
message is counted as bad input with the raw payload (truncated) and never raises out of `read`:

* `bad_json`     the payload is not a JSON object (or is too long, or nests too deep)
* `missing_path` a configured JSON path is not in the message
* `non_numeric`  a value at a path is not a finite number
* `bad_time`     the message's own timestamp cannot be read, or lies in the future
* `stale`        the message's timestamp (or, without one, its arrival) is older than `max_age_s`
* `replayed`     the message's timestamp is not newer than the last one accepted on its topic (a retained
                 message sent again after a reconnect, a device replaying its buffer)

A broker reached as `mqtts://` is spoken to over TLS: its certificate is verified against `ca_file` (or the
system's trust store) and must name the host of the URL; a client certificate (`cert_file`, `key_file`, the key
0600) is presented when both are set. A certificate the hub does not trust is an outage whose detail says why
(`broker ... refused by TLS: certificate verify failed: ...`), never a silent fallback to plain MQTT.

A broker that disappears is reconnected by paho with exponential backoff (`reconnect_delay_set`, up to
`retry_max_s`); the loss and the return are counted as the device events `unavailable` and `reconnected`,
once per outage.

Why a message's own timestamp wins over its arrival: a broker that was down delivers the queued messages
later in a burst; stamping them on arrival would put their energy in the wrong interval.

The configuration (`parse_options`) is validated here and called from `energy_manager.settings`; the presets
(`mqtt_presets.json`) are data: topic templates and JSON paths per device family, validated by the same code.
"""
from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from energy_manager.drivers.base import Device, DeviceSample, InputEvent
from energy_manager.drivers.serial_line import RECONNECTED, UNAVAILABLE, show_raw
from scb import settings as check
from scb.errors import ConfigError, DataError
from scb.files import read_secret_file
from scb.safejson import check_depth

if TYPE_CHECKING:  # imported where a client is made: energy_manager.settings imports this module in every process
    import paho.mqtt.client as paho

log = logging.getLogger("energy_manager.mqtt")

BAD_JSON = "bad_json"
MISSING_PATH = "missing_path"
NON_NUMERIC = "non_numeric"
BAD_TIME = "bad_time"
STALE = "stale"
REPLAYED = "replayed"
MESSAGE_ERROR_KINDS = (BAD_JSON, MISSING_PATH, NON_NUMERIC, BAD_TIME, STALE, REPLAYED)

#: Largest payload decoded, in bytes. A Tasmota SENSOR message is a few hundred bytes, a Shelly status a few KB;
#: beyond this it is not a meter's message, and decoding it would only cost the Pi memory.
MAX_PAYLOAD_BYTES = 16_384
#: Bytes of a payload kept with an event or a sample for the logs and counters (which show 160 characters).
MAX_RAW = 512
#: Largest magnitude accepted as a value: beyond it a float no longer holds every whole Wh exactly.
MAX_MAGNITUDE = Decimal(10) ** 15
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
#: What an outage's event detail ends with (`scb meters scan` strips it: a scan does not retry).
RETRYING = "; retrying until it returns"
PRESETS_FILE = "mqtt_presets.json"
TIME_FORMATS = ("iso", "unix", "unix_ms")
#: How far in the future a message's own timestamp may lie (device clocks drift; NTP on a plug is coarse).
FUTURE_TOLERANCE_MS = 60_000
CUSTOM = "custom"
#: Device value names, as meters name them in `register` and `power` (the serial driver's keys, too).
VALUE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
VALUE_NAME_TEXT = "a value name of letters, digits and '_' starting with a letter (e.g. import_wh)"

MQTT_DEFAULTS: dict[str, Any] = {
    "driver": "mqtt",
    "url": "",            # mqtt://host[:port] (1883), or mqtts://host[:port] (TLS, 8883)
    "username": "",
    "password_file": "",  # a 0600 file holding the password (scb.files.read_secret_file)
    "ca_file": "",        # mqtts: PEM CA certificate(s) the broker's certificate must chain to ("": system store)
    "cert_file": "",      # mqtts: PEM client certificate, for a broker that asks for one (with key_file)
    "key_file": "",       # mqtts: its private key, a 0600 file, not encrypted
    "client_id": "",      # "": scb-<device>-<random>, unique so two hubs never kick each other off
    "preset": CUSTOM,     # "tasmota", "shelly-em" (mqtt_presets.json) or "custom"
    "device": "",         # a preset's {device}: Tasmota's Topic, a Shelly's topic prefix
    "topic": "",          # custom: the topic
    "values": {},         # custom: value name -> "json.path" or {path = "...", scale = 1000}
    "time_path": "",      # custom: where the message's own timestamp is ("" = none, arrival time is used)
    "time_format": "iso",  # iso (naive: in time_zone) | unix (seconds) | unix_ms
    "time_zone": "UTC",   # for naive ISO timestamps (Tasmota sends its local time without offset)
    "max_age_s": 0.0,     # 0: three sample intervals
    "keepalive_s": 30,
    "retry_max_s": 30.0,
}


class MessageError(DataError):
    """A message that gives no values; `kind` names the counter it is counted under."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ValueSpec:
    path: tuple[str, ...]
    scale: Decimal

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class TimeSpec:
    path: tuple[str, ...]
    format: str
    zone: str


@dataclass(frozen=True)
class TopicSpec:
    """One subscribed topic: which values its messages carry, and where their timestamp is."""

    topic: str
    values: dict[str, ValueSpec]
    time: TimeSpec | None


# -- configuration -------------------------------------------------------------------------------------------
def _path(key: str, value: Any) -> tuple[str, ...]:
    text = check.string(key, value, allow_empty=False, max_length=200,
                        expected='a JSON path such as "ENERGY.Total" (keys separated by dots, list indexes as numbers)')
    parts = tuple(text.split("."))
    if any(not p for p in parts):
        raise check.fail(key, 'a JSON path such as "ENERGY.Total" (no empty key between dots)', value)
    return parts


def _value_spec(key: str, value: Any) -> ValueSpec:
    if isinstance(value, str):
        return ValueSpec(_path(key, value), Decimal(1))
    spec = check.table(key, value)
    check.known_keys(key, spec, ("path", "scale"))
    scale = check.number(f"{key}.scale", spec.get("scale", 1), 0, 1e9, low_exclusive=True)
    return ValueSpec(_path(f"{key}.path", spec.get("path")), Decimal(repr(scale)))


def _values(key: str, value: Any) -> dict[str, ValueSpec]:
    table = check.table(key, value)
    if not table:
        raise ConfigError(f"{key} must map at least one value name to a JSON path "
                          '(e.g. import_wh = { path = "ENERGY.Total", scale = 1000 })')
    return {check.string(f"{key}.{name}", name, pattern=VALUE_NAME_RE, expected=VALUE_NAME_TEXT):
            _value_spec(f"{key}.{name}", spec) for name, spec in table.items()}


def _topic(key: str, value: Any) -> str:
    text = check.string(key, value, allow_empty=False, max_length=256,
                        expected='an MQTT topic without wildcards, e.g. "tele/plug-h1/SENSOR"')
    if any(c in text for c in "+#\0"):
        # one device is one source of values: a wildcard would merge several devices' messages into one meter
        raise check.fail(key, "an MQTT topic without wildcards (+ or #): one device, one topic", value)
    return text


def _time_zone(key: str, value: Any) -> str:
    text = check.string(key, value, allow_empty=False, expected='an IANA time zone such as "UTC" or "Europe/Madrid"')
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise check.fail(key, 'an IANA time zone such as "UTC" or "Europe/Madrid"', value) from None
    return text


def _time_spec(key: str, value: Any, zone: str) -> TimeSpec | None:
    if not value:
        return None
    spec = check.table(key, value)
    check.known_keys(key, spec, ("path", "format"))
    return TimeSpec(_path(f"{key}.path", spec.get("path")),
                    check.choice(f"{key}.format", spec.get("format", "iso"), TIME_FORMATS), zone)


@cache
def presets() -> dict[str, dict[str, Any]]:
    """The shipped presets (mqtt_presets.json), as data; validated when a device uses one."""
    text = resources.files("energy_manager.drivers").joinpath(PRESETS_FILE).read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def _preset_topics(section: str, name: str, device: str, zone: str) -> list[TopicSpec]:
    topics = []
    for i, entry in enumerate(presets()[name]["topics"]):
        where = f"preset {name} topic {i + 1}"
        topics.append(TopicSpec(
            topic=_topic(f"{section}.device", entry["topic"].replace("{device}", device)),
            values=_values(where, entry["values"]),
            time=_time_spec(where, entry.get("time"), zone),
        ))
    return topics


def broker_address(key: str, value: Any) -> tuple[str, int, bool]:
    """(host, port, TLS) of a broker URL; one parser for the meters' driver and the Home Assistant bridge."""
    expected = ('an mqtt URL "mqtt://host[:port]" or, for TLS, "mqtts://host[:port]" (user name and password go '
                'in username and password_file)')
    if not isinstance(value, str) or any(c.isspace() for c in value.strip()):
        raise check.fail(key, expected, value)
    parts = urlsplit(value.strip())
    tls = parts.scheme == "mqtts"
    try:
        port = (DEFAULT_TLS_PORT if tls else DEFAULT_PORT) if parts.port is None else parts.port
    except ValueError:  # not a number, or beyond 65535
        raise check.fail(key, expected, value) from None
    if port == 0 or parts.scheme not in ("mqtt", "mqtts") or parts.username or parts.password \
            or parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        raise check.fail(key, expected, value)
    return parts.hostname, port, tls


def tls_context(section: str, ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """The client TLS context of an mqtts:// device: Python's defaults (TLS 1.2+, certificate and host name
    checked), trusting `ca_file` (or the system store), presenting a client certificate when one is set.
    ConfigError with the file and OpenSSL's reason when a file cannot be used: found at start, not as an outage."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{section}.ca_file {ca_file} is not a PEM CA certificate that can be read "
                          f"({_file_reason(exc)})") from None
    if cert_file:
        read_secret_file(key_file, f"{section}.key_file: MQTT TLS client key")  # refuses a key others can read
        try:
            # the password callback: an encrypted key fails here instead of OpenSSL asking for a pass phrase
            # on the terminal of a service that has none
            context.load_cert_chain(cert_file, key_file, password=lambda: "")
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{section}.cert_file {cert_file} and key_file {key_file} are not a PEM certificate "
                              f"and its unencrypted key ({_file_reason(exc)})") from None
    return context


def _file_reason(exc: OSError) -> str:
    """OpenSSL's or the OS's reason, without the `(_ssl.c:NNNN)` source position an operator cannot use."""
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or "").replace("_", " ").lower() or "not readable as PEM"
    return exc.strerror or str(exc)


def parse_options(section: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an `[energy.devices.<name>]` table with driver = "mqtt" (its keys already checked against
    MQTT_DEFAULTS, defaults filled in); returns the options with `host`, `port` and `topics` (TopicSpecs) added.
    The password file is read once here, so that a missing or too open file is a ConfigError at start."""
    raw = check.Section(section, dict(options))
    out = dict(options)
    out["host"], out["port"], out["tls"] = broker_address(raw.key("url"), raw["url"])
    for key in ("ca_file", "cert_file", "key_file"):
        out[key] = str(raw.path(key, allow_empty=True) or "")
        if out[key] and not out["tls"]:
            # a CA file with a plain mqtt:// URL would be ignored, and the password sent in the clear
            raise ConfigError(f"{section}.{key} is set but {section}.url is not mqtts:// (TLS)")
    if bool(out["cert_file"]) != bool(out["key_file"]):
        raise ConfigError(f"{section}.cert_file and {section}.key_file go together (a client certificate and its key)")
    if out["tls"]:
        tls_context(section, out["ca_file"], out["cert_file"], out["key_file"])
    out["username"] = raw.string("username", max_length=256)
    password_file = raw.path("password_file", allow_empty=True)
    if password_file is not None:
        if not out["username"]:
            raise ConfigError(f"{section}.password_file is set but {section}.username is empty")
        read_secret_file(password_file, f"{section}.password_file: MQTT password")
    out["password_file"] = str(password_file) if password_file is not None else ""
    out["client_id"] = raw.string("client_id", max_length=128)
    zone = _time_zone(raw.key("time_zone"), raw["time_zone"])
    preset = raw.choice("preset", (*presets(), CUSTOM))
    if preset == CUSTOM:
        for key in ("device",):
            if raw[key]:
                raise ConfigError(f"{section}.{key} is for a preset; with preset = \"custom\" set topic and values")
        time_spec = None
        if raw["time_path"]:
            time_spec = TimeSpec(_path(raw.key("time_path"), raw["time_path"]),
                                 raw.choice("time_format", TIME_FORMATS), zone)
        out["topics"] = [TopicSpec(_topic(raw.key("topic"), raw["topic"]), _values(raw.key("values"), raw["values"]),
                                   time_spec)]
    else:
        for key in ("topic", "values", "time_path"):
            if raw[key]:
                raise ConfigError(f"{section}.{key} cannot be combined with preset = {json.dumps(preset)} "
                                  "(the preset sets it; use preset = \"custom\" for your own)")
        device = raw.string("device", allow_empty=False, max_length=128,
                            expected=f"the device's MQTT name for the {preset} preset (e.g. \"plug-h1\")")
        out["topics"] = _preset_topics(section, preset, device, zone)
    out["time_zone"] = zone
    out["max_age_s"] = raw.number("max_age_s", 0, 86_400)
    out["keepalive_s"] = raw.integer("keepalive_s", 5, 3600)
    out["retry_max_s"] = raw.number("retry_max_s", 0, 86_400, low_exclusive=True)
    return out


# -- decoding (pure) -------------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _at(document: Any, path: tuple[str, ...]) -> Any:
    node = document
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(part)
    return node


def _timestamp(value: Any, spec: TimeSpec) -> int:
    if spec.format == "iso":
        if not isinstance(value, str):
            raise MessageError(BAD_TIME, f"time {'.'.join(spec.path)}={value!r} is not an ISO 8601 date-time")
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MessageError(BAD_TIME, f"time {'.'.join(spec.path)}={value!r} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(spec.zone))
        return int(moment.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or not Decimal(value).is_finite():
        raise MessageError(BAD_TIME, f"time {'.'.join(spec.path)}={value!r} is not a Unix time")
    scale = 1000 if spec.format == "unix" else 1
    ms = Decimal(value) * scale
    if not 0 <= ms < Decimal(2) ** 53:
        raise MessageError(BAD_TIME, f"time {'.'.join(spec.path)}={value!r} is not a Unix time")
    return int(ms)


def decode(payload: bytes, spec: TopicSpec) -> tuple[dict[str, float], int | None]:
    """A message's values (scaled) and its own timestamp (UTC ms, None when it carries none); raises MessageError.

    Numbers are parsed as decimals and scaled exactly: `1.001` kWh x 1000 is 1001 Wh, where floats would give
    1000.9999999999999 and the floor the monitor applies to registers would lose a Wh."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(BAD_JSON, f"message of {len(payload)} bytes is longer than {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
        check_depth(text)
        document = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, DataError, RecursionError) as exc:
        raise MessageError(BAD_JSON, f"message is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MessageError(BAD_JSON, "message is not a JSON object")
    values: dict[str, float] = {}
    for name, value_spec in spec.values.items():
        try:
            found = _at(document, value_spec.path)
        except KeyError:
            raise MessageError(MISSING_PATH, f"no {value_spec.text} in the message (for {name})") from None
        if isinstance(found, bool) or not isinstance(found, (int, Decimal)):
            raise MessageError(NON_NUMERIC, f"{value_spec.text}={show_value(found)} is not a number (for {name})")
        try:
            scaled = Decimal(found) * value_spec.scale
        except InvalidOperation:
            raise MessageError(NON_NUMERIC, f"{value_spec.text}={found} is not a number (for {name})") from None
        if not scaled.is_finite() or abs(scaled) > MAX_MAGNITUDE:
            raise MessageError(NON_NUMERIC, f"{value_spec.text}={found} is out of range (for {name})")
        values[name] = float(scaled)
    ts: int | None = None
    if spec.time is not None:
        try:
            stamp = _at(document, spec.time.path)
        except KeyError:
            stamp = None  # "when it carries one": not every firmware stamps every message
        if stamp is not None:
            ts = _timestamp(stamp, spec.time)
    return values, ts


def show_value(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# -- the device ----------------------------------------------------------------------------------------------
def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class _Part:
    """The newest good message of one topic."""

    number: int
    ts_ms: int
    values: dict[str, float]
    raw: bytes


class MqttDevice(Device):
    """One meter (one or a few topics) on an MQTT broker."""

    driver = "mqtt"

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        topics: list[TopicSpec],
        *,
        max_age_ms: int,
        username: str = "",
        password_file: str = "",
        tls: bool = False,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        client_id: str = "",
        keepalive_s: int = 30,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        super().__init__(name)
        self.host, self.port = host, port
        self.topics = {t.topic: t for t in topics}
        self.max_age_ms = max_age_ms
        self.clock_ms = clock_ms
        self._lock = threading.Lock()
        self._parts: dict[str, _Part] = {}
        self._last_ts: dict[str, int] = {}   # newest own timestamp accepted per topic (replay detection)
        self._seen: dict[str, int] = {}      # part number already returned or judged stale, per topic
        self._messages = 0
        self._down_since: float | None = None
        self._outage_reported = False
        #: set while subscribed to the broker (after its SUBACK; for status and tests)
        self.connected = threading.Event()
        self.connects = 0
        password = read_secret_file(password_file, f"energy.devices.{name}.password_file: MQTT password") \
            if password_file else None
        import paho.mqtt.client as paho

        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"scb-{name}-{uuid.uuid4().hex[:8]}",
                                   protocol=paho.MQTTv311, reconnect_on_failure=True)
        if username:
            self._client.username_pw_set(username, password)
        #: why the last TLS handshake failed (paho reports only that the connection failed)
        self._tls_failure: str | None = None
        if tls:
            context = tls_context(f"energy.devices.{name}", ca_file, cert_file, key_file)
            context.sslsocket_class = _handshake_recorder(self._note_tls_failure)
            self._client.tls_set_context(context)
        self._client.reconnect_delay_set(retry_min_s, retry_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self.keepalive_s = keepalive_s
        self._started = False

    # -- sampling-loop side -------------------------------------------------------------------------------
    def open(self) -> None:
        if not self._started:
            self._started = True
            self._down_since = time.monotonic()  # not connected yet: the first connect is not a "return"
            self._client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
            self._client.loop_start()

    def read(self, now_ms: int) -> DeviceSample | None:
        """Merge the newest message of each topic; None unless one of them is new. A topic whose newest message
        is older than max_age_s is left out (and counted `stale`, once)."""
        with self._lock:
            fresh: list[_Part] = []
            new = False
            for topic, part in self._parts.items():
                if now_ms - part.ts_ms > self.max_age_ms:
                    if self._seen.get(topic) != part.number:
                        self._seen[topic] = part.number
                        self._event(STALE, f"{topic}: newest message is {(now_ms - part.ts_ms) / 1000:.0f} s old "
                                           f"(more than {self.max_age_ms / 1000:g} s)", part.raw)
                    continue
                fresh.append(part)
                if self._seen.get(topic) != part.number:
                    self._seen[topic] = part.number
                    new = True
            if not new:
                return None
        newest = max(fresh, key=lambda p: (p.ts_ms, p.number))
        values: dict[str, float] = {}
        for part in sorted(fresh, key=lambda p: (p.ts_ms, p.number)):
            values.update(part.values)
        return DeviceSample(ts_ms=newest.ts_ms, values=values, raw=newest.raw)

    def checkpoint(self) -> dict[str, Any] | None:
        with self._lock:
            return {"last_ts": dict(self._last_ts)} if self._last_ts else None

    def restore(self, state: dict[str, Any]) -> None:
        last = state.get("last_ts")
        if isinstance(last, dict):
            with self._lock:
                self._last_ts.update({t: int(v) for t, v in last.items()
                                      if t in self.topics and isinstance(v, int) and not isinstance(v, bool)})

    def close(self) -> None:
        if self._started:
            self._started = False
            self._client.disconnect()
            self._client.loop_stop()
            self.connected.clear()

    # -- paho's thread ----------------------------------------------------------------------------------------
    def _event(self, kind: str, detail: str, raw: bytes | None = None) -> None:
        shown = f": {show_raw(raw)}" if raw is not None else ""
        (log.info if kind == RECONNECTED else log.warning)("meter device %s: %s%s", self.name, detail, shown)
        self.events.add(InputEvent(kind, detail, raw[:MAX_RAW] if raw is not None else None))

    def _went_down(self, detail: str) -> None:
        # counted and logged once per outage: paho retries every few seconds, the counter is for people
        if not self._outage_reported:
            self._outage_reported = True
            self._event(UNAVAILABLE, detail + RETRYING)
        if self._down_since is None:
            self._down_since = time.monotonic()

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._went_down(f"broker {self.host}:{self.port} refused the connection ({reason})")
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        self.connects += 1
        if self._outage_reported:
            since = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            self._event(RECONNECTED, f"broker {self.host}:{self.port} is back after {since:.0f} s")
        self._outage_reported = False
        self._down_since = None

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            # an ACL that denies the topic: the broker is up, but this device will never get a value
            self._event(UNAVAILABLE, f"broker {self.host}:{self.port} refused the subscription ({', '.join(refused)})")
            return
        self.connected.set()

    def _note_tls_failure(self, reason: str) -> None:
        self._tls_failure = reason

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        failure, self._tls_failure = self._tls_failure, None
        if failure is not None:
            self._went_down(f"broker {self.host}:{self.port} refused by TLS: {failure}")
        else:
            self._went_down(f"cannot reach broker {self.host}:{self.port}")

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        failure, self._tls_failure = self._tls_failure, None
        if not self._started:
            return
        if was_up:
            # a broker that goes away mid-session over TLS often ends with an SSL error (EOF without close_notify):
            # that is a lost broker, not a refusal
            self._down_since = None
            self._went_down(f"lost broker {self.host}:{self.port} ({failure or reason})")
        elif failure is not None:
            self._went_down(f"broker {self.host}:{self.port} refused by TLS: {failure}")
        else:
            # closed before it accepted us: plain MQTT sent to a TLS port, a broker that drops the client at once
            self._went_down(f"broker {self.host}:{self.port} closed the connection before accepting it ({reason})")

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        spec = self.topics.get(message.topic)
        if spec is None:
            return  # a topic we did not subscribe to (a broker bridging more than asked)
        payload = bytes(message.payload)
        try:
            values, own_ts = decode(payload, spec)
        except MessageError as exc:
            self._event(exc.kind, f"{message.topic}: {exc.message}", payload)
            return
        now = self.clock_ms()
        ts = own_ts if own_ts is not None else now
        with self._lock:
            if own_ts is not None and own_ts > now + FUTURE_TOLERANCE_MS:
                self._event(BAD_TIME, f"{message.topic}: the message's time is "
                                      f"{(own_ts - now) / 1000:.0f} s in the future", payload)
                return
            if now - ts > self.max_age_ms:
                self._event(STALE, f"{message.topic}: message is {(now - ts) / 1000:.0f} s old "
                                   f"(more than {self.max_age_ms / 1000:g} s)", payload)
                return
            last = self._last_ts.get(message.topic)
            if own_ts is not None and last is not None and own_ts <= last:
                self._event(REPLAYED, f"{message.topic}: the message's time is not newer than the last one "
                                      f"accepted ({own_ts} <= {last} ms)", payload)
                return
            if own_ts is not None:
                self._last_ts[message.topic] = own_ts
            self._messages += 1
            self._parts[message.topic] = _Part(self._messages, ts, values, payload[:MAX_RAW])


def _tls_reason(exc: ssl.SSLError) -> str:
    reason = str(exc.reason or exc).replace("_", " ").lower()
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        reason += f": {exc.verify_message}"  # e.g. "unable to get local issuer certificate"
    return reason


def _handshake_recorder(note: Callable[[str], None]) -> type[ssl.SSLSocket]:
    """An SSLSocket class (`SSLContext.sslsocket_class`, public since Python 3.7) that hands the reason of a TLS
    failure to `note` before paho sees the exception. Why: paho catches it as an OSError and calls
    `on_connect_fail` (or `on_disconnect`) without it, so an installer would read "cannot reach broker" for an
    untrusted certificate. `recv` too, because with TLS 1.3 a broker refuses a missing client certificate after
    the handshake, in the first record it sends. "Want read/write" is no failure (non-blocking sockets)."""
    routine = (ssl.SSLWantReadError, ssl.SSLWantWriteError)

    class Recording(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            try:
                super().do_handshake(block)
            except routine:
                raise
            except ssl.SSLError as exc:
                note(_tls_reason(exc))
                raise

        def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
            try:
                return super().recv(buflen, flags)
            except routine:
                raise
            except ssl.SSLError as exc:
                note(_tls_reason(exc))
                raise

    return Recording


def build(name: str, options: Mapping[str, Any], sample_interval_ms: int) -> MqttDevice:
    """The device from parse_options' result; max_age_s = 0 means three sample intervals."""
    max_age_ms = round(options["max_age_s"] * 1000) or 3 * sample_interval_ms
    return MqttDevice(name, options["host"], options["port"], options["topics"], max_age_ms=max_age_ms,
                      username=options["username"], password_file=options["password_file"],
                      tls=options["tls"], ca_file=options["ca_file"], cert_file=options["cert_file"],
                      key_file=options["key_file"],
                      client_id=options["client_id"], keepalive_s=options["keepalive_s"],
                      retry_max_s=options["retry_max_s"])

