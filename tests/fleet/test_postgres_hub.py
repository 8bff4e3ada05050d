"""A hub whose own database is PostgreSQL uploads to a fleet like one on SQLite: the uploader's queue queries are
portable (issue 14: "the hub runs on PostgreSQL")."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from fleet.auth import allow
from fleet.models import FleetProof, FleetReading, FleetSettlement
from mam_client.node.server import RunningNode
from hub.fleet.upload import backlog
from tests.fleet.conftest import drain, make_fleet_hub, start_fleet
from tests.services.postgres import PostgresServer

pytestmark = pytest.mark.slow


def test_a_hub_on_postgresql_uploads_everything(tmp_path: Path, tangle: RunningNode,
                                                postgres_server: PostgresServer) -> None:
    h = make_fleet_hub(tmp_path / "hub", tangle, "hub-pg", 3, database__url=postgres_server.create_database())
    try:
        assert h.hub.factory.kw["bind"].dialect.name == "postgresql"
        with start_fleet(tmp_path, postgres_server.create_database()) as fleet:
            allow(fleet.factory, h.account.address)
            drain(h.uploader(fleet.url, batch_max_items=100))
            with h.hub.factory() as session:
                readings = session.scalar(select(func.count(StoredReading.id)))
            with fleet.factory() as session:
                assert session.scalar(select(func.count(FleetReading.id))) == readings
                assert session.scalar(select(func.count(FleetSettlement.id))) == 2
                assert session.scalar(select(func.count(FleetProof.id))) > 0
            with h.hub.factory() as session:
                waiting = backlog(session)["waiting"]
            assert waiting["reading"] == waiting["settlement"] == 0  # caught up
    finally:
        h.hub.factory.kw["bind"].dispose()
        h.anvil.stop()
