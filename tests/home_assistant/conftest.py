"""Fixtures for the Home Assistant bridge tests: a real mosquitto (tests/services/mosquitto.py) and a hub with
readings settled on a real anvil (the settlement tests' in-process hub), shared by the module's tests."""
from __future__ import annotations

from tests.services.mosquitto import auth_broker, broker, mosquitto  # noqa: F401  (fixtures)
