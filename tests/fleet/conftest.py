"""Fixtures of the fleet tests: a fleet server (SQLite or a real PostgreSQL), a real tangle node, and hubs whose
energy manager, publisher (over the real node) and settlement (on a real anvil each) run in-process."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from fleet.server import RunningFleet, serve_in_thread
from hub.fleet.client import FleetClient
from hub.fleet.models import FleetUploadCursor
from hub.fleet.settings import fleet_settings
from hub.fleet.upload import Uploader
from mam_client.node.server import RunningNode
from mam_client.node.server import serve_in_thread as serve_node
from mam_client.node.settings import NodeSettings
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from mam_client.transport import PyotaTransport
from scb.config import Config
from scb.db import transaction
from settlement.chain import dev_account
from tests.services.postgres import PostgresServer, postgres_server  # noqa: F401 (fixture)
from tests.settlement.conftest import START_MS, Anvil, Hub, make_hub, start_anvil

TEST_MWM = 3
HOUR_MS = 3_600_000
#: the community time the test hubs run to: periods 1 and 2 closed and past their lateness window. Why so few, with
#: half-hour publish windows: each message is a real bundle with proof of work on the real node.
RUN_UNTIL_MS = START_MS + 2 * HOUR_MS + 35 * 60_000
BACKENDS = ("sqlite", "postgresql")


def fleet_config(data_dir: Path, database_url: str, **fleet: Any) -> Config:
    return Config(data={"hub": {"data_dir": str(data_dir)}, "fleet": {"database_url": database_url, **fleet}})


def start_fleet(data_dir: Path, database_url: str, port: int = 0, **fleet: Any) -> RunningFleet:
    config = fleet_config(data_dir, database_url, **fleet)
    return serve_in_thread(config, replace(fleet_settings(config), port=port))


def backend_url(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'fleet.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(scope="session")
def tangle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    settings = NodeSettings(db=tmp_path_factory.mktemp("tangle") / "tangle.sqlite3", port=0, mwm=TEST_MWM,
                            pow_threads=2)
    with serve_node(settings) as running:
        yield running


@dataclass
class FleetHub:
    """A test hub and the account it uploads with."""

    hub: Hub
    anvil: Anvil
    account: Any
    side_key_file: Path

    def uploader(self, url: str, batch_max_items: int = 400) -> Uploader:
        return Uploader(self.hub.factory, FleetClient(url, timeout_s=30), lambda: self.account,
                        hub_id=self.hub.monitor.settings.hub_id, batch_max_items=batch_max_items,
                        heartbeat_interval_s=0.0,
                        status=lambda: {"status": {"outbox": {"by_state": {"attached": 1}}}, "alerts": []})

    def reset_cursors(self) -> None:
        """As if this hub had never uploaded (to fill another fleet from the same hub)."""
        with transaction(self.hub.factory) as session:
            session.execute(delete(FleetUploadCursor))


def make_fleet_hub(tmp: Path, tangle: RunningNode, hub_id: str, account_index: int, **overrides: Any) -> FleetHub:
    anvil = start_anvil()
    hub = make_hub(tmp, anvil.url, hub__id=hub_id, energy__publish_window_s=1800, settlement__lateness_s=1800,
                   **overrides)
    hub.publisher = Publisher(hub.factory, mam_settings(hub.config), PyotaTransport(tangle.url, mwm=TEST_MWM),
                              tag="SCB")
    hub.publisher.ensure_channels()
    hub.run_until(RUN_UNTIL_MS)
    while hub.publisher.run_once():
        pass
    assert hub.settle().settled == [1, 2]
    side_key = tmp / "data" / "secrets" / "mam-readings.sidekey"
    assert side_key.is_file()
    return FleetHub(hub, anvil, dev_account(account_index), side_key)


def drain(uploader: Uploader, ceiling: int = 1000) -> int:
    """Upload until the uploader has nothing more (a step that is not a full batch); returns the steps taken."""
    for steps in range(1, ceiling + 1):
        if uploader.step() is None:
            return steps
    raise AssertionError(f"the uploader still had work after {ceiling} batches")


@pytest.fixture(scope="session")
def hubs(tmp_path_factory: pytest.TempPathFactory, tangle: RunningNode) -> Iterator[tuple[FleetHub, FleetHub]]:
    """Two hubs, each on its own anvil, with two settled periods (shared by the fleet test modules: building them
    is the expensive part). Hub A uploads with its hub account (dev account 0, holding the hub role on its
    contract), hub B with dev account 7 (admitted by `scb fleet allow`)."""
    a = make_fleet_hub(tmp_path_factory.mktemp("hub-a"), tangle, "hub-a", 0)
    b = make_fleet_hub(tmp_path_factory.mktemp("hub-b"), tangle, "hub-b", 7)
    try:
        yield a, b
    finally:
        a.anvil.stop()
        b.anvil.stop()
