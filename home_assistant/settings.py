"""Typed view of the `[mqtt]` configuration section: the broker Home Assistant listens to.

Empty `url` (the embedded default): no bridge, `scb run` does not start `scb home-assistant`. The password is
read from a 0600 file (scb.files.read_secret_file), never from the configuration or the command line.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from scb import settings as check
from scb.config import Config
from scb.errors import ConfigError
from scb.files import read_secret_file

#: The top-level section this module reads.
SECTIONS: tuple[str, ...] = ("mqtt",)
MQTT_DEFAULTS: dict[str, Any] = {
    "url": "",                          # mqtt://host[:1883] or mqtts://host[:8883]; "" = no Home Assistant bridge
    "username": "",
    "password_file": "",                # a 0600 file with the password
    "ca_file": "",                      # mqtts: CA certificate(s) of the broker ("" = the system's)
    "client_id": "",                    # "" = scb-<hub id>-home-assistant
    "discovery_prefix": "homeassistant",  # Home Assistant's discovery prefix (its MQTT integration's setting)
    "base_topic": "",                   # where the states go; "" = scb/<hub id>
    "interval_s": 10.0,                 # real seconds between state updates
    "keepalive_s": 60,
    "retry_max_s": 60.0,                # longest wait between reconnection attempts
}
#: Why this ceiling: Home Assistant keeps every state change in its recorder; one update a second per entity is
#: far more than an energy dashboard shows and would only fill the Pi's and Home Assistant's disks.
MIN_INTERVAL_S = 1.0


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    tls: bool
    username: str
    password: str | None
    ca_file: str
    client_id: str
    discovery_prefix: str
    base_topic: str
    interval_s: float
    keepalive_s: int
    retry_max_s: float

    def tls_context(self) -> ssl.SSLContext:
        from energy_manager.drivers.mqtt import tls_context

        return tls_context("mqtt", self.ca_file, "", "")


def mqtt_enabled(config: Config) -> bool:
    """Whether `[mqtt] url` is set (the bridge runs); the section is not validated further here."""
    value = check.read_section(config, "mqtt", MQTT_DEFAULTS)["url"]
    return isinstance(value, str) and bool(value.strip())


def _topic(key: str, value: Any) -> str:
    text = check.string(key, value, expected="an MQTT topic without wildcards (+, #)")
    if any(c in text for c in "+#\0") or text.startswith("/") or text.endswith("/"):
        raise check.fail(key, "an MQTT topic without wildcards (+, #) or leading/trailing '/'", value)
    return text


def mqtt_settings(config: Config, hub_id: str) -> MqttSettings:
    """The validated `[mqtt]` section (ConfigError naming the key); the password file is read here, so a missing
    or too open file is found at start."""
    from energy_manager.drivers.mqtt import broker_address

    raw = check.read_section(config, "mqtt", MQTT_DEFAULTS)
    if not str(raw["url"]).strip():
        raise ConfigError("mqtt.url is not set: there is no broker to publish to (docs/home-assistant.md)")
    host, port, tls = broker_address(raw.key("url"), raw["url"])
    username = raw.string("username", expected="a user name, or \"\"")
    password_file = raw.path("password_file", allow_empty=True)
    password = read_secret_file(password_file, "mqtt.password_file: MQTT password") if password_file else None
    if password is not None and not username:
        raise ConfigError("mqtt.password_file is set but mqtt.username is empty: set the user name too")
    ca_file = str(raw.path("ca_file", allow_empty=True) or "")
    if ca_file and not tls:
        raise ConfigError("mqtt.ca_file is set but mqtt.url is not mqtts://: the CA would not be used")
    client_id = raw.string("client_id", max_length=64, expected="an MQTT client id of up to 64 characters") \
        or f"scb-{hub_id}-home-assistant"
    base = _topic(raw.key("base_topic"), raw["base_topic"]) if raw["base_topic"] else f"scb/{hub_id}"
    return MqttSettings(
        host=host, port=port, tls=tls, username=username, password=password, ca_file=ca_file, client_id=client_id,
        discovery_prefix=_topic(raw.key("discovery_prefix"), raw["discovery_prefix"]), base_topic=base,
        interval_s=raw.number("interval_s", MIN_INTERVAL_S, 3600), keepalive_s=raw.integer("keepalive_s", 5, 3600),
        retry_max_s=raw.number("retry_max_s", 1, 3600))
