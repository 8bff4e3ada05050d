"""Home Assistant MQTT discovery: the configs that make the hub's households and system appear as entities.

Pure (no I/O), so the payloads are tested without a broker. Home Assistant's documented discovery format: one
retained config per entity on `<discovery_prefix>/<component>/<node_id>/<object_id>/config`, each with a
`unique_id`, the `device` it belongs to (one device per household, one for the community's system), the
`availability_topic` (the bridge's last will: "offline" when it dies), and where its value is: one retained JSON
state per device on `<base_topic>/<device>/state`, picked by `value_template`.

Entities per household: energy consumed (kWh, `device_class: energy`, `state_class: total_increasing`, so it can
be chosen in Home Assistant's Energy dashboard), power (W, `measurement`), debt, deposit and equity paid
(`monetary`, in ETH), good standing (a binary_sensor) and the supply decision (`enum`: supply or grid). For the
system: generation, grid import and grid export energy (kWh, total_increasing) and generation power (W).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scb import __version__

SYSTEM = "system"
ONLINE, OFFLINE = "online", "offline"
#: Home Assistant publishes this on `<discovery_prefix>/status` when it (re)starts: then every config is sent again
BIRTH_TOPIC_SUFFIX = "status"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Entity:
    component: str  # sensor | binary_sensor
    key: str  # object id within the device, and the state's JSON key
    name: str
    extra: dict[str, Any]


def _energy(key: str, name: str) -> Entity:
    """A running energy total: what Home Assistant's Energy dashboard accepts (kWh, total_increasing)."""
    return Entity("sensor", key, name, {"device_class": "energy", "state_class": "total_increasing",
                                        "unit_of_measurement": "kWh", "suggested_display_precision": 3})


def _power(key: str, name: str) -> Entity:
    return Entity("sensor", key, name, {"device_class": "power", "state_class": "measurement",
                                        "unit_of_measurement": "W"})


def _ether(key: str, name: str) -> Entity:
    return Entity("sensor", key, name, {"device_class": "monetary", "unit_of_measurement": "ETH",
                                        "suggested_display_precision": 6})


HOUSEHOLD_ENTITIES = (
    _energy("energy", "Energy consumed"),
    _power("power", "Power"),
    _ether("debt", "Debt"),
    _ether("deposit", "Deposit"),
    _ether("equity", "Equity paid"),
    Entity("binary_sensor", "good_standing", "Good standing", {"payload_on": "ON", "payload_off": "OFF"}),
    Entity("sensor", "supply", "Supply decision", {"device_class": "enum", "options": ["supply", "grid"]}),
)
SYSTEM_ENTITIES = (
    _energy("generation", "Generation"),
    _power("generation_power", "Generation power"),
    _energy("grid_import", "Grid import"),
    _energy("grid_export", "Grid export"),
)


def safe(text: str) -> str:
    """A topic level / id Home Assistant accepts: letters, digits, '_' and '-'."""
    return _UNSAFE.sub("_", text)


@dataclass(frozen=True)
class Topics:
    discovery_prefix: str
    base_topic: str
    hub_id: str

    @property
    def node_id(self) -> str:
        return safe(f"scb_{self.hub_id}")

    @property
    def availability(self) -> str:
        return f"{self.base_topic}/availability"

    @property
    def birth(self) -> str:
        return f"{self.discovery_prefix}/{BIRTH_TOPIC_SUFFIX}"

    def state(self, device: str) -> str:
        return f"{self.base_topic}/{safe(device)}/state"

    def config(self, component: str, device: str, key: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{safe(device)}_{key}/config"


def _device(topics: Topics, device: str, account: str | None) -> dict[str, Any]:
    system_id = f"{topics.node_id}_{SYSTEM}"
    if device == SYSTEM:
        return {"identifiers": [system_id], "name": f"SCB community {topics.hub_id}",
                "manufacturer": "Smart Community Brain", "model": "community solar system", "sw_version": __version__}
    info: dict[str, Any] = {"identifiers": [f"{topics.node_id}_{safe(device)}"], "name": f"SCB household {device}",
                            "manufacturer": "Smart Community Brain", "model": "SolarProperty holder",
                            "via_device": system_id, "sw_version": __version__}
    if account:
        info["serial_number"] = account
    return info


def configs(topics: Topics, holders: dict[str, str]) -> dict[str, dict[str, Any]]:
    """topic -> discovery config, for the system and each holder (party -> account)."""
    out: dict[str, dict[str, Any]] = {}
    devices: list[tuple[str, str | None, tuple[Entity, ...]]] = [(SYSTEM, None, SYSTEM_ENTITIES)]
    devices += [(party, account, HOUSEHOLD_ENTITIES) for party, account in sorted(holders.items())]
    for device, account, entities in devices:
        for e in entities:
            out[topics.config(e.component, device, e.key)] = {
                "name": e.name,
                "unique_id": f"{topics.node_id}_{safe(device)}_{e.key}",
                "state_topic": topics.state(device),
                "value_template": f"{{{{ value_json.{e.key} }}}}",
                "availability_topic": topics.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "device": _device(topics, device, account),
                "origin": {"name": "Smart Community Brain", "sw_version": __version__},
                **e.extra,
            }
    return out
