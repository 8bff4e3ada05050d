"""The fleet's JSON API, CSV export and page for the SaaS side, and what its edge and its ingest refuse."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from energy_manager.models import StoredReading
from fleet.auth import allow
from fleet.models import FleetBatch, FleetHub as FleetHubRow, FleetReading
from fleet.server import RunningFleet
from hub.fleet import protocol
from settlement.merkle import process_proof, reading_leaf, to_hex
from settlement.models import SETTLED, SettlementPeriod
from tests.fleet.conftest import FleetHub, drain, start_fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, hubs: tuple[FleetHub, FleetHub]) -> Iterator[RunningFleet]:
    tmp = tmp_path_factory.mktemp("fleet-api")
    with start_fleet(tmp, f"sqlite:///{tmp / 'fleet.sqlite3'}", stale_after_s=600) as running:
        for h in hubs:
            allow(running.factory, h.account.address)
            h.reset_cursors()
            drain(h.uploader(running.url))
        yield running


def get(fleet: RunningFleet, path: str, **params: object) -> requests.Response:
    return requests.get(fleet.url + path, params=params, timeout=30)


def hub_rows(h: FleetHub) -> list[StoredReading]:
    with h.hub.factory() as session:
        return list(session.scalars(select(StoredReading).order_by(StoredReading.id)))


def test_readings_page_by_page_and_filtered(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    a, _ = hubs
    expected = hub_rows(a)
    path = f"/api/v1/hubs/{a.account.address}/readings"
    seen: list[dict] = []
    after = 0
    while after is not None:
        page = get(fleet, path, limit=40, after=after).json()
        assert len(page["readings"]) <= 40
        seen += page["readings"]
        after = page["next"]
    assert [r["digest"] for r in seen] == [r.digest for r in expected]
    assert [r["canonical"] for r in seen] == [bytes(r.canonical).decode() for r in expected]
    meter = expected[0].meter
    one_meter = get(fleet, path, meter=meter, limit=10_000).json()["readings"]
    assert one_meter and {r["meter"] for r in one_meter} == {meter}
    assert len(one_meter) == sum(1 for r in expected if r.meter == meter)
    start, end = expected[10].ts_ms, expected[60].ts_ms
    ranged = get(fleet, path, **{"from": str(start), "to": str(end), "limit": 10_000}).json()["readings"]
    assert len(ranged) == sum(1 for r in expected if start <= r.ts_ms < end)
    iso = get(fleet, path, **{"from": seen[10]["ts"], "to": seen[60]["ts"], "limit": 10_000}).json()["readings"]
    assert [r["id"] for r in iso] == [r["id"] for r in ranged]
    bad = get(fleet, path, **{"from": "yesterday"})
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]
    assert get(fleet, path, limit=0).status_code == 400
    assert get(fleet, "/api/v1/hubs/0x0000000000000000000000000000000000000001/readings").status_code == 404


def test_readings_as_csv(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    _, b = hubs
    answer = get(fleet, f"/api/v1/hubs/{b.account.address}/readings.csv")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    expected = hub_rows(b)
    assert [r["digest"] for r in rows] == [r.digest for r in expected]
    assert [int(r["register_wh"]) for r in rows] == [r.register_wh for r in expected]


def test_messages_settlements_proofs_and_bills(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    a, _ = hubs
    base = f"/api/v1/hubs/{a.account.address}"
    messages = get(fleet, base + "/messages").json()["messages"]
    assert messages and all(m["payload"] and m["root"] and m["mode"] == "restricted" for m in messages)
    settlements = get(fleet, base + "/settlements").json()["settlements"]
    assert [s["period_id"] for s in settlements] == [1, 2]
    assert all(s["tx_hash"] and s["contract"] == a.hub.system.contract for s in settlements)
    # a proof from the fleet leads to its period's root (as the hub settled it)
    reading = hub_rows(a)[5]
    proof = get(fleet, f"/api/v1/proofs/{reading.digest}").json()["proof"]
    root = next(s["readings_root"] for s in settlements if s["period_id"] == proof["period_id"])
    computed = process_proof(reading_leaf(bytes.fromhex(reading.digest)),
                             [bytes.fromhex(s[2:]) for s in proof["siblings"]])
    assert to_hex(computed) == root
    at = get(fleet, f"/api/v1/messages/{messages[0]['address']}").json()
    assert at["hub"] == a.account.address and at["system"]["contract"] == a.hub.system.contract
    assert get(fleet, "/api/v1/messages/" + "9" * 81).status_code == 404
    assert get(fleet, "/api/v1/messages/nope").status_code == 400
    holders = get(fleet, base + "/holders").json()["holders"]
    assert [h["party"] for h in holders] == ["h1", "h2", "h3"]
    # the bills against what the hub itself settled (not the fleet's own copy, which a faulty ingest shares)
    with a.hub.factory() as session:
        consumption = {p.period_id: {c["account"]: c["wh"] for c in json.loads(p.consumption_json)}
                       for p in session.scalars(select(SettlementPeriod).where(SettlementPeriod.state == SETTLED))}
    for h in holders:
        assert [b["period_id"] for b in h["bills"]] == [1, 2]
        assert [b["wh"] for b in h["bills"]] == [consumption[1][h["account"]], consumption[2][h["account"]]]


def test_a_holders_standing_is_its_newest_supply_decision(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) \
        -> None:
    _, b = hubs
    system = b.hub.system
    holders = get(fleet, f"/api/v1/hubs/{b.account.address}/holders").json()["holders"]
    account = holders[1]["account"]
    chain_id = b.hub.client.chain_id

    def decision(i: int, what: str, debt: str) -> dict:
        return {"kind": "decision", "id": i, "chain_id": chain_id, "contract": system.contract,
                "system_id": system.system_id, "party": "h2", "account": account, "decision": what,
                "reason": f"test {i}", "status": "late" if what == "grid" else "good", "prepaid_wei": "0",
                "debt_wei": debt, "next_due": None, "block_number": 5, "community_ms": 1, "decided_at_ms": 1,
                "applied": True, "actuator": "none"}

    batch = protocol.make_batch("hub-b", b.account.address, 50_000, 2,
                                [decision(900_001, "grid", "123"), decision(900_002, "supply", "0")], None)
    assert requests.post(f"{fleet.url}/api/v1/upload", json=protocol.sign(batch, b.account),
                         timeout=30).status_code == 200
    standing = next(h for h in get(fleet, f"/api/v1/hubs/{b.account.address}/holders").json()["holders"]
                    if h["party"] == "h2")["standing"]
    assert standing["decision"] == "supply" and standing["reason"] == "test 900002"


def test_the_fleet_page_shows_every_hub_and_a_stale_one_stands_out(fleet: RunningFleet,
                                                                   hubs: tuple[FleetHub, FleetHub]) -> None:
    a, b = hubs
    with fleet.factory() as session, session.begin():
        session.execute(update(FleetHubRow).where(FleetHubRow.account == a.account.address)
                        .values(heartbeat_ms=1_000_000_000_000))  # 2001: long stale
    page = requests.get(fleet.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "<script" not in html and "src=" not in html and "http" not in html.split("<body>")[1]
    row_a = html.split(f'data-account="{a.account.address}"')[0].rsplit("<tr", 1)[1]
    row_b = html.split(f'data-account="{b.account.address}"')[0].rsplit("<tr", 1)[1]
    assert 'class="stale' in row_a and 'class="stale' not in row_b
    assert "STALE" in html.split(f'data-account="{a.account.address}"')[1].split("</tr>")[0]
    listed = {h["name"]: h for h in get(fleet, "/api/v1/hubs").json()["hubs"]}
    assert listed["hub-a"]["stale"] is True and listed["hub-b"]["stale"] is False
    assert listed["hub-b"]["outbox_depth"] == 0 and listed["hub-b"]["upload_backlog"] is not None


def test_the_edge_refuses_foreign_hosts_and_origins(fleet: RunningFleet) -> None:
    foreign_host = requests.get(fleet.url + "/api/v1/hubs", headers={"Host": "evil.example"}, timeout=30)
    assert foreign_host.status_code == 403 and "host names" in foreign_host.json()["error"]
    foreign_origin = requests.get(fleet.url + "/api/v1/hubs", headers={"Origin": "http://evil.example"}, timeout=30)
    assert foreign_origin.status_code == 403
    form = requests.post(fleet.url + "/api/v1/upload", data="batch=1",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert form.status_code == 415


def test_a_batch_with_one_bad_item_is_refused_whole(fleet: RunningFleet, hubs: tuple[FleetHub, FleetHub]) -> None:
    a, b = hubs
    reading = hub_rows(b)[0]
    good = {"kind": "reading", "id": 1, "canonical": bytes(reading.canonical).decode(), "digest": reading.digest,
            "delta_wh": 0, "flags": "", "message_id": None, "address": None}
    other = hub_rows(a)[0]
    cases = {
        "do not hash to the digest": {**good, "digest": "0" * 64},
        "a reading of hub 'hub-a'": {**good, "canonical": bytes(other.canonical).decode(), "digest": other.digest},
        "not a canonical reading": {**good, "canonical": "{}"},
    }
    with fleet.factory() as session:
        before = (session.scalar(select(func.count(FleetBatch.id))), session.scalar(select(func.count(FleetReading.id))))
    for n, (reason, bad) in enumerate(cases.items()):
        batch = protocol.make_batch("hub-b", b.account.address, 60_000 + n, 3, [good, bad], None)
        answer = requests.post(f"{fleet.url}/api/v1/upload", json=protocol.sign(batch, b.account), timeout=30)
        assert answer.status_code == 400 and reason in answer.json()["error"], answer.text
    not_json = requests.post(f"{fleet.url}/api/v1/upload", data=b"{", headers={"Content-Type": "application/json"},
                             timeout=30)
    assert not_json.status_code == 400
    with fleet.factory() as session:
        after = (session.scalar(select(func.count(FleetBatch.id))), session.scalar(select(func.count(FleetReading.id))))
    assert after == before
