"""The dashboard's JSON endpoints against a hub database filled by the real components (tests/dashboard/conftest.py):
numbers agree with the database and the chain, verification is `scb verify`'s, bad requests are 400 JSON, nothing
changes state, and the holders' standing survives an unreachable chain."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text

from dashboard.app import create_app
from dashboard.data import HolderBoard, open_read_database, settlements
from dashboard.settings import dashboard_settings
from energy_manager.models import StoredReading
from mam_client.models import OutboxMessage
from scb.config import Config
from scb.db import make_engine, make_sessionmaker
from scb.errors import ConfigError
from settlement.chain import ChainClient, dev_account
from settlement.models import SettlementPeriod
from settlement.settings import ethereum_settings
from tests.dashboard.conftest import Filled, Server, settings_for
from tests.settlement.conftest import write_toml
from tests.web3_reference import contract_of


def get(server: Server, path: str, **kw: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=60, **kw)


def instant(value: Any) -> float:
    """Seconds since the epoch of a time as the API shows it or the database holds it (ISO text, datetime or
    seconds)."""
    if isinstance(value, (int, float)):
        return float(value)
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:  # SQLite keeps naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def same_instant(shown: Any, stored: Any) -> bool:
    """The API may show times to the second: equal within the second the stored value falls in."""
    return shown is not None and stored is not None and 0 <= instant(stored) - instant(shown) < 1


def test_status_agrees_with_the_database(filled: Filled, dashboard: Server) -> None:
    """/api/status against SQL on the tables, written here, not the status code the endpoint calls."""
    body = get(dashboard, "/api/status").json()
    assert body["hub"] == "test-hub"
    assert body["dashboard"]["refresh_s"] == 2.0 and body["dashboard"]["chart_bucket"] == "window"
    status = body["status"]
    with filled.hub.factory() as session:
        def sql(query: str, **params: Any) -> Any:
            return session.execute(text(query), params)

        count = sql("SELECT count(*) FROM energy_readings").scalar()
        last = sql("SELECT id, meter, seq, ts_ms FROM energy_readings ORDER BY id DESC LIMIT 1").one()
        by_state = dict(sql("SELECT state, count(*) FROM mam_messages GROUP BY state").all())
        attached = sql("SELECT id, address, attached_at FROM mam_messages WHERE state = 'attached' "
                       "ORDER BY id DESC LIMIT 1").one()
        system = sql("SELECT id, chain_id, contract, system_id, holders_json FROM settlement_systems "
                     "ORDER BY id DESC LIMIT 1").one()
        period = sql("SELECT period_id, state, start_s, end_s, reading_count, tx_hash, last_error "
                     "FROM settlement_periods WHERE system_ref = :s ORDER BY period_id DESC LIMIT 1",
                     s=system.id).one()
        holders = json.loads(system.holders_json)
        decisions = {party: sql("SELECT decision, reason, status, debt_wei, applied, decided_at "
                                "FROM settlement_supply_decisions WHERE system_ref = :s AND party = :p "
                                "ORDER BY id DESC LIMIT 1", s=system.id, p=party).one_or_none()
                     for party in holders}

    readings = status["readings"]
    assert count > 0 and readings["count"] == count
    assert (readings["last"]["id"], readings["last"]["meter"], readings["last"]["seq"]) == \
        (last.id, last.meter, last.seq)
    assert same_instant(readings["last"]["ts"], last.ts_ms / 1000), (readings["last"], last.ts_ms)

    outbox = status["outbox"]
    assert outbox["by_state"] == by_state and set(by_state) == {"attached"}  # the fixture published everything
    assert (outbox["last_attached"]["id"], outbox["last_attached"]["address"]) == (attached.id, attached.address)
    assert same_instant(outbox["last_attached"]["at"], attached.attached_at), (outbox["last_attached"], attached)

    settlement = status["settlement"]
    assert (settlement["chain_id"], settlement["contract"], settlement["system_id"]) == \
        (system.chain_id, system.contract, system.system_id) == (31337, filled.hub.system.contract, 1)
    shown = settlement["last_period"]
    assert (shown["period_id"], shown["state"], shown["readings"], shown["tx"], shown["error"]) == \
        (period.period_id, period.state, period.reading_count, period.tx_hash, period.last_error)
    assert (period.period_id, period.state) == (3, "settled")  # what the fixture did: periods 1-3 settled
    assert same_instant(shown["start"], period.start_s) and same_instant(shown["end"], period.end_s)
    assert set(settlement["holders"]) == set(holders) == {"h1", "h2", "h3"}
    for party, row in decisions.items():
        h = settlement["holders"][party]
        assert h["account"] == holders[party] and row is not None, party
        assert (h["decision"], h["reason"], h["status"], h["debt_wei"], bool(h["applied"])) == \
            (row.decision, row.reason, row.status, row.debt_wei, bool(row.applied)), party
        assert same_instant(h["since"], row.decided_at), (party, h["since"], row.decided_at)
    assert settlement["holders"]["h3"]["decision"] == "grid" and settlement["holders"]["h1"]["decision"] == "supply"


def test_energy_series_sums_the_readings_deltas(filled: Filled, dashboard: Server) -> None:
    series = get(dashboard, "/api/energy?bucket=hour&points=3").json()
    assert series["bucket_ms"] == 3_600_000 and series["parties"] == ["h1", "h2", "h3"]
    assert len(series["points"]) == 3
    with filled.hub.factory() as session:
        for point in series["points"]:
            in_bucket = (StoredReading.ts_ms >= point["start_ms"]) & (StoredReading.ts_ms < point["end_ms"])
            gen = session.scalar(select(func.sum(StoredReading.delta_wh))
                                 .where(in_bucket, StoredReading.circuit == "generation"))
            assert point["generation_wh"] == gen
            for party in ("h1", "h2", "h3"):
                used = session.scalar(select(func.sum(StoredReading.delta_wh)).where(
                    in_bucket, StoredReading.circuit == "consumption", StoredReading.party == party))
                assert point["consumption_wh"][party] == used
        newest = session.scalar(select(func.max(StoredReading.ts_ms)))
    assert series["newest_ms"] == newest and series["points"][-1]["open"] and not series["points"][0]["open"]
    assert sum(p["generation_wh"] for p in series["points"]) > 0  # midsummer: the sun shines

    windows = get(dashboard, "/api/energy").json()  # default: per publish window, the configured points
    assert windows["bucket_ms"] == 900_000 and len(windows["points"]) == 17  # 4h10m of readings, 15-min windows
    starts = [p["start_ms"] for p in windows["points"]]
    assert starts == sorted(starts) and all(s % 900_000 == 0 for s in starts)


def test_hourly_generation_matches_the_settled_periods(filled: Filled, dashboard: Server) -> None:
    """Periods are hours here: the chart's hourly generation is what was settled on chain."""
    series = {p["start_ms"] // 1000: p for p in get(dashboard, "/api/energy?bucket=hour&points=10").json()["points"]}
    periods = get(dashboard, "/api/settlements").json()["periods"]
    assert [p["period_id"] for p in periods] == [3, 2, 1]
    for period in periods:
        assert series[period["start_s"]]["generation_wh"] == period["generation_wh"]
        assert {c["party"]: c["wh"] for c in period["consumption"]} == series[period["start_s"]]["consumption_wh"]


def test_messages_newest_first_with_readings_and_settled_flag(filled: Filled, dashboard: Server) -> None:
    messages = get(dashboard, "/api/messages?limit=200").json()["messages"]
    with filled.hub.factory() as session:
        ids = list(session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())))
    assert [m["id"] for m in messages] == ids
    assert {m["address"] for m in messages if m["settled"]} == set(filled.settled_addresses)
    assert all(m["readings"] > 0 and m["state"] == "attached" for m in messages)
    page = get(dashboard, f"/api/messages?limit=2&before={ids[0]}").json()["messages"]
    assert [m["id"] for m in page] == ids[1:3]


def test_settlements_carry_their_transactions(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/settlements?limit=2").json()
    assert body["system"]["contract"] == filled.hub.system.contract and body["system"]["system_id"] == 1
    assert [p["period_id"] for p in body["periods"]] == [3, 2]
    client = filled.hub.client
    for period in body["periods"]:
        assert period["state"] == "settled" and period["tx"].startswith("0x")
        receipt = client.receipt(period["tx"])
        assert receipt is not None and receipt["status"] == 1 and receipt["blockNumber"] == period["block"]
    assert [p["period_id"] for p in get(dashboard, "/api/settlements?before=2").json()["periods"]] == [1]


def test_holders_standing_equity_and_debt_from_the_chain(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/holders").json()
    assert body["source"] == "chain" and body["error"] is None and body["block"] > 0
    holders = {h["party"]: h for h in body["holders"]}
    assert list(holders) == ["h1", "h2", "h3"]
    c = contract_of(filled.hub.client, filled.hub.system.contract)
    for party, index in (("h1", 1), ("h2", 2), ("h3", 3)):
        info = c.functions.holderInfo(1, dev_account(index).address).call()
        h = holders[party]
        assert (h["share_bps"], h["holding_value_wei"], h["equity_paid_wei"], h["debt_wei"], h["prepaid_wei"]) == \
            (info[2], str(info[4]), str(info[5]), str(info[6]), str(info[7]))
        assert h["status"] == "paying"
    assert holders["h1"]["in_good_standing"] and int(holders["h1"]["prepaid_wei"]) > 0
    assert int(holders["h2"]["equity_paid_wei"]) == 0  # it paid its bill, not yet towards its share
    assert holders["h3"]["in_good_standing"] is False and int(holders["h3"]["debt_wei"]) > 0
    assert holders["h3"]["decision"]["decision"] == "grid" and holders["h1"]["decision"]["decision"] == "supply"


def test_decisions_newest_first(filled: Filled, dashboard: Server) -> None:
    decisions = get(dashboard, "/api/decisions").json()["decisions"]
    assert [(d["party"], d["decision"]) for d in decisions] == [("h3", "grid"), ("h3", "supply"), ("h2", "supply"),
                                                               ("h1", "supply")]
    assert "unpaid past its due time" in decisions[0]["reason"] and decisions[0]["applied"] is True


# ------------------------------------------------------------------------------------------------ verification


def test_verify_a_settled_message_is_valid_with_every_step(filled: Filled, dashboard: Server) -> None:
    address = filled.settled_addresses[2]
    report = get(dashboard, f"/api/verify?address={address}").json()
    assert report["verdict"] == "VALID" and report["exit_code"] == 0, report
    names = [s["step"] for s in report["steps"]]
    assert names[:5] == ["root", "fetch", "signature", "message", "chain"] and "channel" in names
    assert any(n.endswith(" verifyReading") for n in names) and all(s["ok"] is not False for s in report["steps"])
    assert "tangle node" in report["steps"][1]["detail"]
    # the messages list shows the result of the last verification
    listed = {m["address"]: m for m in get(dashboard, "/api/messages?limit=200").json()["messages"]}
    assert listed[address]["verification"]["verdict"] == "VALID"
    assert listed[filled.settled_addresses[0]]["verification"] is None


def test_verify_an_unsettled_message_could_not_check(filled: Filled, dashboard: Server) -> None:
    report = get(dashboard, f"/api/verify?address={filled.open_addresses[-1]}").json()
    assert report["verdict"] == "COULD NOT CHECK" and report["exit_code"] == 2
    assert "not settled yet" in report["reason"]


def test_verify_a_pruned_message_reads_the_archive(filled: Filled, dashboard: Server) -> None:
    """A message the node no longer has is read from the hub's archive, and the report says so."""
    tangle = filled.hub.tangle
    address = filled.settled_addresses[1]
    tangle.pruned.add(address)
    try:
        report = get(dashboard, f"/api/verify?address={address}").json()
    finally:
        tangle.pruned.discard(address)
    assert report["verdict"] == "VALID" and "archive" in report["steps"][1]["detail"]


def test_dashboard_runs_the_same_verification_as_the_command(filled: Filled, dashboard: Server, tmp_path) -> None:
    """Same steps, same verdict as `scb verify ADDRESS --json` run as a user would (node unreachable: archive)."""
    config = write_toml(filled.hub.config, tmp_path / "scb.toml")
    address = filled.settled_addresses[0]
    cli = subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(config), "verify", address, "--json",
                          "--node", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    tangle = filled.hub.tangle
    tangle.up = False  # the dashboard's node is down too: both read the hub's archive
    try:
        got = get(dashboard, f"/api/verify?address={address}").json()
    finally:
        tangle.up = True
    got.pop("verified_at")
    assert got == expected


def test_verify_refuses_bad_and_foreign_addresses(dashboard: Server) -> None:
    for query in ("", "?address=", "?address=abc", "?address=" + "a" * 81, "?address=" + "A" * 80,
                  "?address=" + "A" * 81 + "&address=" + "B" * 81, "?addr=" + "A" * 81):
        r = get(dashboard, "/api/verify" + query)
        assert r.status_code == 400, query
        assert r.headers["Content-Type"].startswith("application/json") and r.json()["error"]
    r = get(dashboard, "/api/verify?address=" + "A" * 81)
    assert r.status_code == 404 and "no message at" in r.json()["error"]


# ------------------------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("path", [
    "/api/energy?bucket=day", "/api/energy?points=1", "/api/energy?points=501", "/api/energy?points=x",
    "/api/energy?points=-3", "/api/energy?points=%EF%BC%93",  # a full-width digit is not a number here
    "/api/messages?limit=0", "/api/messages?limit=201", "/api/messages?before=0", "/api/messages?limit=1e3",
    "/api/settlements?limit=" + "9" * 30, "/api/decisions?before=abc", "/api/holders?x=1", "/api/status?json=1",
    "/?verify=A&verify=B",
])
def test_bad_requests_are_400_json(dashboard: Server, path: str) -> None:
    r = get(dashboard, path)
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] and "Traceback" not in r.text


def test_read_only_unknown_paths_and_headers(dashboard: Server) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/api/verify?address=" + "A" * 81, "/api/status", "/"):
            r = requests.request(method, dashboard.url + path, timeout=10, data=b"{}")
            assert r.status_code == 405 and r.json()["error"], (method, path)
    r = get(dashboard, "/api/unknown")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    assert get(dashboard, "/static/../dashboard/app.py").status_code == 404
    page = get(dashboard, "/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert get(dashboard, "/?utm_source=newsletter").status_code == 200  # the page ignores what it does not use
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    # no external resources: the page and its script work offline
    for asset in ("/", "/static/dashboard.js", "/static/dashboard.css"):
        text = get(dashboard, asset).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert get(dashboard, "/api/status").headers["Cache-Control"] == "no-store"


def test_loopback_dashboard_answers_to_loopback_names_only(dashboard: Server) -> None:
    r = get(dashboard, "/api/status", headers={"Host": "attacker.example"})
    assert r.status_code == 403 and "127.0.0.1" in r.json()["error"]
    assert get(dashboard, "/api/status", headers={"Host": f"localhost:{dashboard.port}"}).status_code == 200


def test_nothing_changes_the_database(filled: Filled) -> None:
    """The dashboard's engine refuses writes (PRAGMA query_only), whatever a bug might try."""
    from sqlalchemy.exc import OperationalError

    factory = open_read_database(filled.hub.config)
    with factory() as session:
        count = session.scalar(select(func.count(SettlementPeriod.id)))
        with pytest.raises(OperationalError, match="readonly"):
            session.execute(text("DELETE FROM settlement_periods"))
    with filled.hub.factory() as session:
        assert session.scalar(select(func.count(SettlementPeriod.id))) == count


def test_the_dashboard_reads_while_a_writer_holds_the_lock(filled: Filled) -> None:
    """A hub process in the middle of a transaction (BEGIN IMMEDIATE, uncommitted) does not hold the dashboard up:
    its reads are deferred WAL transactions that see the last committed state. (A reader taking the write lock
    would fail here with 'database is locked' once the short busy timeout below runs out.)"""
    config = Config(data={**filled.hub.config.data, "database": {"busy_timeout_s": 0.05}})
    factory = open_read_database(config)  # migrates first: before the writer takes the lock
    with filled.hub.factory() as writer:
        writer.execute(text("UPDATE settlement_periods SET attempts = attempts + 1000"))
        try:
            periods = settlements(factory, 10)["periods"]
        finally:
            writer.rollback()
    assert periods and all(p["attempts"] < 1000 for p in periods)


def test_internal_error_is_json_without_traceback(filled: Filled) -> None:
    """A failing query (here: the database file's tables are gone) is a 500 JSON answer; the log has the rest."""
    engine = make_engine("sqlite://", read_only=True)  # an empty in-memory database: no tables

    app = create_app(filled.hub.config, make_sessionmaker(engine), settings_for(filled))
    server = Server(app).start()
    try:
        r = get(server, "/api/messages")
        assert r.status_code == 500 and r.json() == {"error": "internal error (see the dashboard's log)"}
        assert "Traceback" not in r.text and "sqlite" not in r.text.lower()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ chain down


def test_holders_when_the_chain_is_unreachable(filled: Filled) -> None:
    """First the last values read from the chain, then (a new dashboard) the standing stored with the decisions."""
    eth = ethereum_settings(filled.hub.config)
    target = {"url": filled.anvil.url}
    factory = open_read_database(filled.hub.config)
    board = HolderBoard(filled.hub.config, factory, cache_s=0, timeout_s=2,
                        client_for=lambda: ChainClient(eth, rpc_url=target["url"]))
    live = board.holders()
    assert live["source"] == "chain"
    target["url"] = "http://127.0.0.1:9"  # nothing listens there
    cached = board.holders()
    assert cached["source"] == "cache" and "unreachable" in cached["error"] and cached["block"] == live["block"]
    assert cached["holders"] == live["holders"]

    fresh = HolderBoard(filled.hub.config, factory, cache_s=60, timeout_s=2,
                        client_for=lambda: ChainClient(eth, rpc_url="http://127.0.0.1:9"))
    stored = fresh.holders()
    assert stored["source"] == "stored" and "unreachable" in stored["error"] and "block" not in stored
    by_party = {h["party"]: h for h in stored["holders"]}
    assert by_party["h3"]["status"] == "paying" and int(by_party["h3"]["debt_wei"]) > 0
    assert by_party["h3"]["decision"]["decision"] == "grid"
    assert by_party["h1"]["equity_paid_wei"] is None  # not stored anywhere but on chain: shown as unknown
    again = fresh.holders()  # within cache_s the dead node is not asked again
    assert again["error"] == stored["error"]


def test_holders_endpoint_with_a_dead_rpc(filled: Filled, tmp_path) -> None:
    config = Config(data={**filled.hub.config.data, "ethereum": {"rpc_url": "http://127.0.0.1:9"}})
    app = create_app(config, open_read_database(config), settings_for(filled))
    server = Server(app).start()
    try:
        r = get(server, "/api/holders")
        assert r.status_code == 200 and r.json()["source"] == "stored"
        assert len(r.json()["holders"]) == 3
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ settings


def test_settings_errors_name_the_key() -> None:
    assert dashboard_settings(Config()).port == 8720 and dashboard_settings(Config()).host == "127.0.0.1"
    for section, message in (({"port": 0}, "dashboard.port"), ({"port": "80"}, "dashboard.port"),
                             ({"refresh_s": 0}, "dashboard.refresh_s"), ({"chart_bucket": "day"}, "chart_bucket"),
                             ({"host": ""}, "dashboard.host"), ({"chart_points": 1}, "chart_points"),
                             ({"prot": 1}, "dashboard.prot")):
        with pytest.raises(ConfigError, match=message):
            dashboard_settings(Config(data={"dashboard": section}))
