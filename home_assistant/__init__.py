"""Home Assistant over MQTT: the hub's households and system as discovered entities (docs/home-assistant.md)."""
