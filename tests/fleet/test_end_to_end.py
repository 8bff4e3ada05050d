"""The "done when" of issue 14: a fleet (on SQLite and on a real PostgreSQL) receives two hubs' data; with one
hub's data directory gone, its readings still verify with `scb verify ADDRESS --fleet URL`, and mam.js and PyOTA
read its channel from the fleet's permanode; a replay stores nothing twice; a stranger's upload is refused."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from fleet.auth import allow
from fleet.models import FleetBatch, FleetMessage, FleetProof, FleetReading, FleetSettlement, FleetTransaction
from fleet.server import RunningFleet
from hub.fleet import protocol
from hub.verification import verify_fleet_address
from mam_client.models import ATTACHED, OutboxMessage
from scb.config import Config
from settlement.chain import dev_account
from settlement.models import SETTLED, ReadingProof, SettlementPeriod
from settlement.verify import VALID
from tests.conftest import REPO, run_node
from tests.fleet.conftest import BACKENDS, FleetHub, backend_url, drain, start_fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          hubs: tuple[FleetHub, FleetHub]) -> Iterator[RunningFleet]:
    """A fleet that accepts hub A by its hub role on A's contract and hub B by `scb fleet allow`, filled by both."""
    a, b = hubs
    tmp = tmp_path_factory.mktemp(f"fleet-{request.param}")
    with start_fleet(tmp, backend_url(request.param, tmp, request), rpc_url=a.anvil.url,
                     contract=a.hub.system.contract) as running:
        allow(running.factory, b.account.address, "hub B")
        for h in hubs:
            h.reset_cursors()
            drain(h.uploader(running.url))
        yield running


def count(fleet: RunningFleet, model: type, **where: object) -> int:
    with fleet.factory() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int(session.scalar(query) or 0)


def hub_counts(h: FleetHub) -> dict[str, int]:
    with h.hub.factory() as session:
        return {
            "readings": session.scalar(select(func.count(StoredReading.id))) or 0,
            "messages": session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.state == ATTACHED))
            or 0,
            "periods": session.scalar(select(func.count(SettlementPeriod.id))
                                      .where(SettlementPeriod.state == SETTLED)) or 0,
            "proofs": session.scalar(select(func.count(ReadingProof.reading_id))
                                     .join(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                                     .where(SettlementPeriod.state == SETTLED)) or 0,
        }


def test_both_hubs_data_is_on_the_fleet(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    listed = requests.get(f"{fleet.url}/api/v1/hubs", timeout=30).json()["hubs"]
    assert {h["name"] for h in listed} == {"hub-a", "hub-b"}
    for h in hubs:
        expected = hub_counts(h)
        assert expected["readings"] > 60 and expected["messages"] >= 5 and expected["periods"] == 2
        row = next(x for x in listed if x["name"] == h.hub.monitor.settings.hub_id)
        assert row["account"] == h.account.address and not row["stale"]
        assert row["last_settlement"]["period_id"] == 2
        hub_ref = _hub_ref(fleet, h)
        assert count(fleet, FleetReading, hub_ref=hub_ref) == expected["readings"]
        assert count(fleet, FleetMessage, hub_ref=hub_ref) == expected["messages"]
        assert count(fleet, FleetSettlement, hub_ref=hub_ref) == expected["periods"]
        assert count(fleet, FleetProof, hub_ref=hub_ref) == expected["proofs"]
        with fleet.factory() as session:
            unaddressed = session.scalar(select(func.count(FleetReading.id)).where(
                FleetReading.hub_ref == hub_ref, FleetReading.address.is_(None)))
        with h.hub.factory() as session:
            unpublished = session.scalar(select(func.count(StoredReading.id)).where(
                StoredReading.message_id.is_(None)))
        assert unaddressed == unpublished  # every published reading knows the address that carries it


def _hub_ref(fleet: RunningFleet, h: FleetHub) -> int:
    from fleet.models import FleetHub as Row

    with fleet.factory() as session:
        return int(session.scalar(select(Row.id).where(Row.account == h.account.address)))


def test_a_replay_stores_nothing_twice(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    """The hub lost its cursors (a crash after the fleet answered, over and over): everything is sent again, and
    the fleet stores no row twice."""
    a, _ = hubs
    before = {m: count(fleet, m) for m in (FleetReading, FleetMessage, FleetTransaction, FleetSettlement,
                                           FleetProof)}
    batches = count(fleet, FleetBatch)
    a.reset_cursors()
    steps = drain(a.uploader(fleet.url, batch_max_items=250))  # other batch boundaries than the first time
    assert steps > 1
    assert {m: count(fleet, m) for m in before} == before
    assert count(fleet, FleetBatch) == batches + steps  # each batch was received (and stored nothing new)


def test_the_same_batch_twice_is_a_replay(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    _, b = hubs
    batch = protocol.make_batch("hub-b", b.account.address, 10_000, 1, [], {"sent_at_ms": 1, "alerts": []})
    envelope = protocol.sign(batch, b.account)
    first = requests.post(f"{fleet.url}/api/v1/upload", json=envelope, timeout=30)
    second = requests.post(f"{fleet.url}/api/v1/upload", json=envelope, timeout=30)
    assert first.status_code == second.status_code == 200
    assert first.json()["replay"] is False and second.json()["replay"] is True
    # an old heartbeat (sent_at_ms 1) did not replace the newer one
    row = next(x for x in requests.get(f"{fleet.url}/api/v1/hubs", timeout=30).json()["hubs"] if x["name"] == "hub-b")
    assert row["last_heartbeat"] > "2000"


def test_a_strangers_upload_is_refused_and_stores_nothing(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) \
        -> None:
    a, _ = hubs
    stranger = dev_account(9)
    with a.hub.factory() as session:
        reading = session.scalars(select(StoredReading).limit(1)).one()
    item = {"kind": "reading", "id": 1, "canonical": bytes(reading.canonical).decode(), "digest": reading.digest,
            "delta_wh": 0, "flags": "", "message_id": None, "address": None}
    before = count(fleet, FleetBatch), count(fleet, FleetReading)
    signed = protocol.sign(protocol.make_batch("hub-a", stranger.address, 1, 1, [item], None), stranger)
    refused = requests.post(f"{fleet.url}/api/v1/upload", json=signed, timeout=30)
    assert refused.status_code == 403 and stranger.address in refused.json()["error"]
    unsigned = {"batch": signed["batch"]}
    assert requests.post(f"{fleet.url}/api/v1/upload", json=unsigned, timeout=30).status_code == 401
    # a stranger claiming an allowed hub's account: the signature does not match
    forged = protocol.sign(protocol.make_batch("hub-a", a.account.address, 1, 1, [item], None), stranger)
    answer = requests.post(f"{fleet.url}/api/v1/upload", json=forged, timeout=30)
    assert answer.status_code == 401 and "not signed by" in answer.json()["error"]
    assert (count(fleet, FleetBatch), count(fleet, FleetReading)) == before


def test_with_the_hub_gone_its_readings_verify_from_the_fleet(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub],
                                                              tmp_path: Path) -> None:
    a, _ = hubs
    with a.hub.factory() as session:
        addresses = [m.address for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))][:4]
    side_key = tmp_path / "side.key"
    shutil.copy(a.side_key_file, side_key)
    os.chmod(side_key, 0o600)
    data_dir = a.hub.config.data_dir
    away = data_dir.with_name("data-gone")
    a.hub.factory.kw["bind"].dispose()
    data_dir.rename(away)  # the hub's data directory is gone (restored after the test for the other backend)
    try:
        auditor = Config(data={"hub": {"data_dir": str(tmp_path / "auditor")},
                               "ethereum": {"rpc_url": a.anvil.url}})
        for address in (addresses[0], addresses[3]):
            report = verify_fleet_address(auditor, address, fleet.url, side_key=side_key.read_text().strip())
            assert report.verdict == VALID, report.text()
            names = [s.name for s in report.steps]
            assert "channel" in names and sum(n.endswith("verifyReading") for n in names) > 0
            assert not any(s.name.endswith("tree") for s in report.steps)  # proofs came from the fleet
            assert any(s.name == "root" and "from the fleet" in s.detail for s in report.steps), report.text()
        # the command, as an auditor types it
        toml = tmp_path / "auditor.toml"
        toml.write_text(f'[hub]\ndata_dir = "{tmp_path / "auditor"}"\n[ethereum]\nrpc_url = "{a.anvil.url}"\n')
        proc = subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(toml), "verify", addresses[2],
                               "--fleet", fleet.url, "--side-key-file", str(side_key), "--json"],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert json.loads(proc.stdout)["verdict"] == "VALID"
        assert not (tmp_path / "auditor" / "scb.sqlite3").exists()
    finally:
        away.rename(data_dir)


def test_mamjs_and_pyota_read_the_channel_from_the_permanode(fleet: RunningFleet,
                                                            hubs: tuple[FleetHub, FleetHub]) -> None:
    a, _ = hubs
    with a.hub.factory() as session:
        messages = list(session.scalars(select(OutboxMessage).where(OutboxMessage.state == ATTACHED)
                                        .order_by(OutboxMessage.id)))
    side_key = a.side_key_file.read_text().strip()
    out = run_node("mamjs_tangle.js", {"provider": f"{fleet.url}/iota", "ops": [
        {"op": "fetchAll", "root": messages[0].root, "mode": "restricted", "sideKey": side_key},
        {"op": "fetch", "root": messages[3].root, "mode": "restricted", "sideKey": side_key}]})
    every, one = out["results"]
    assert every["ok"], every
    assert [m["message"] for m in every["messages"]] == [m.message for m in messages]
    assert one["ok"] and one["message"]["message"] == messages[3].message
    assert one["message"]["nextRoot"] == messages[3].next_root

    from iota import Address, BundleHash, Iota

    api = Iota(f"{fleet.url}/iota")
    found = api.find_transactions(addresses=[Address(messages[2].address)])["hashes"]
    hashes = json.loads(messages[2].tx_hashes)
    assert sorted(str(h) for h in found) == sorted(hashes)
    trytes = api.get_trytes([str(h) for h in found])["trytes"]
    assert sorted(str(t) for t in trytes) == sorted(json.loads(messages[2].bundle_trytes))
    by_bundle = api.find_transactions(bundles=[BundleHash(messages[2].bundle_hash)])["hashes"]
    assert sorted(str(h) for h in by_bundle) == sorted(hashes)
    info = api.get_node_info()
    assert info["appName"] == "SCB fleet permanode"
    # a write command is not offered: the permanode is read-only
    refused = requests.post(f"{fleet.url}/iota", json={"command": "storeTransactions", "trytes": []},
                            headers={"X-IOTA-API-Version": "1"}, timeout=30)
    assert refused.status_code == 400 and "unknown" in refused.json()["error"]
