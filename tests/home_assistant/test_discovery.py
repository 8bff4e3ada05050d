"""The discovery configs (pure): Home Assistant's documented topic layout and fields, and the Energy dashboard's
requirements (device_class energy, state_class total_increasing, kWh)."""
from __future__ import annotations

from home_assistant.discovery import HOUSEHOLD_ENTITIES, SYSTEM_ENTITIES, Topics, configs

TOPICS = Topics("homeassistant", "scb/hub-1", "hub-1")
HOLDERS = {"h1": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "h2": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"}


def test_one_config_per_entity_on_the_documented_topics() -> None:
    found = configs(TOPICS, HOLDERS)
    assert len(found) == len(SYSTEM_ENTITIES) + 2 * len(HOUSEHOLD_ENTITIES)
    for topic in found:
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "scb_hub-1", "config")
        assert component in ("sensor", "binary_sensor")
        assert object_id.split("_")[0] in ("system", "h1", "h2")
    assert "homeassistant/sensor/scb_hub-1/h1_energy/config" in found
    assert "homeassistant/binary_sensor/scb_hub-1/h2_good_standing/config" in found


def test_every_config_names_its_device_state_and_availability() -> None:
    found = configs(TOPICS, HOLDERS)
    ids = [c["unique_id"] for c in found.values()]
    assert len(set(ids)) == len(ids)
    for c in found.values():
        assert c["availability_topic"] == "scb/hub-1/availability"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert c["state_topic"] in ("scb/hub-1/system/state", "scb/hub-1/h1/state", "scb/hub-1/h2/state")
        assert c["value_template"].startswith("{{ value_json.") and c["device"]["identifiers"]
    h1 = found["homeassistant/sensor/scb_hub-1/h1_energy/config"]
    assert h1["device"]["via_device"] == found["homeassistant/sensor/scb_hub-1/system_generation/config"][
        "device"]["identifiers"][0]
    assert h1["device"]["serial_number"] == HOLDERS["h1"]


def test_energy_entities_fit_the_energy_dashboard() -> None:
    found = configs(TOPICS, HOLDERS)
    energy = [c for t, c in found.items() if t.endswith(("_energy/config", "_generation/config", "_grid_import/config",
                                                        "_grid_export/config"))]
    assert len(energy) == 2 + 3
    assert all((c["device_class"], c["state_class"], c["unit_of_measurement"]) == ("energy", "total_increasing", "kWh")
               for c in energy)
    power = found["homeassistant/sensor/scb_hub-1/h2_power/config"]
    assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == ("power", "measurement", "W")
    for key in ("debt", "deposit", "equity"):
        money = found[f"homeassistant/sensor/scb_hub-1/h1_{key}/config"]
        assert money["device_class"] == "monetary" and "state_class" not in money  # goes up and down
    supply = found["homeassistant/sensor/scb_hub-1/h1_supply/config"]
    assert supply["device_class"] == "enum" and supply["options"] == ["supply", "grid"]


def test_unsafe_characters_in_ids_are_replaced() -> None:
    found = configs(Topics("ha", "scb/x", "hub.one"), {"h.1": "0x" + "11" * 20})
    assert "ha/sensor/scb_hub_one/h_1_energy/config" in found
