"""The broker fixtures of the mqtt driver tests come from the shared module tests/services/mosquitto.py."""
from __future__ import annotations

from tests.services.mosquitto import (  # noqa: F401  (fixtures pytest finds here, and names the tests import)
    AUTH_PASSWORD,
    Broker,
    BrokerTls,
    TlsFiles,
    auth_broker,
    broker,
    mosquitto,
    tls_broker,
    tls_files,
    wait_for,
)
