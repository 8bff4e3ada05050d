"""A household's own page (`/holder/<party>`, `/api/holder`, `/api/holder/readings`, `/api/proof`, the CSV
downloads) over the filled hub of conftest.py: h1 prepaid, h2 paid its first bill, h3 never paid.

Expected values come from the database, the chain (`holderInfo`, the contract's own events read here with web3)
and the `scb` command run as a user would, never from the dashboard's own code."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from energy_manager.models import StoredReading
from hub.cli import main
from settlement.chain import dev_account
from settlement.models import SETTLED, SettlementPeriod
from tests.dashboard.conftest import Filled, Server
from tests.settlement.conftest import write_toml
from tests.web3_reference import contract_of


def get(server: Server, path: str, **kw: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=60, **kw)


def scb(filled: Filled, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scb ARGS...` run as a user would."""
    config = write_toml(filled.hub.config, tmp_path / "scb.toml")
    return subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120)


def test_page_is_served_for_a_party(dashboard: Server) -> None:
    page = get(dashboard, "/holder/h2")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert '<script src="/static/holder.js"' in page.text and 'name="viewport"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    assert get(dashboard, "/holder/bad%20party").status_code == 400


def test_standing_bills_and_payments_of_the_prompt_payer(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/holder?party=h2").json()
    hub = filled.hub
    h2 = dev_account(2).address
    assert body["party"] == "h2" and body["account"] == h2 and body["ledger_error"] is None
    c = contract_of(hub.client, hub.system.contract)
    info = c.functions.holderInfo(hub.system.system_id, h2).call()
    assert body["standing"]["equity_paid_wei"] == str(info[5]) and body["standing"]["debt_wei"] == str(info[6])
    with hub.factory() as session:
        periods = {p.period_id: p for p in session.scalars(select(SettlementPeriod)
                                                            .where(SettlementPeriod.state == SETTLED))}
        readings = {p: len(list(session.scalars(select(StoredReading.id).where(StoredReading.party == "h2",
                                                                              StoredReading.period == p))))
                    for p in periods}
    assert [b["period_id"] for b in body["bills"]] == sorted(periods, reverse=True)  # newest first
    billed = {int(e["args"]["periodId"]): e["args"] for e in c.events.Billed().get_logs(from_block=0)}
    for bill in body["bills"]:
        p = periods[bill["period_id"]]
        assert bill["settle_tx"] == p.tx_hash and bill["readings"] == readings[p.period_id] > 0
        index = next(i for i, e in enumerate(json.loads(p.consumption_json)) if e["party"] == "h2")
        assert bill["consumption_wh"] == json.loads(p.consumption_json)[index]["wh"]
        assert bill["amount_wei"] == billed[p.period_id]["amounts"][index] > 0
        assert bill["unpaid_wei"] == billed[p.period_id]["unpaid"][index]
    paid = [e["args"] for e in c.events.Paid().get_logs(from_block=0, argument_filters={"holder": h2})]
    assert [(p["event"], p["args"]["toDebt"]) for p in body["payments"]] == [("Paid", str(a["toDebt"])) for a in paid]
    assert all(p["tx"].startswith("0x") and p["time"].endswith("Z") for p in body["payments"])


def test_deposit_shows_for_the_prepaying_household(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/holder?party=h1").json()
    deposits = [p for p in body["payments"] if p["event"] == "Deposited"]
    assert [d["args"]["toPrepaid"] for d in deposits] == [str(10**17)]  # conftest.py's deposit
    assert all(b["unpaid_wei"] == 0 and b["from_deposit_wei"] == b["amount_wei"] > 0 for b in body["bills"])


def test_the_household_that_never_paid(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/holder?party=h3").json()
    assert body["standing"]["in_good_standing"] is False
    assert body["standing"]["decision"]["decision"] == "grid"
    assert body["payments"] == []
    assert sum(b["unpaid_wei"] for b in body["bills"]) == int(body["standing"]["debt_wei"]) > 0


def test_readings_of_a_period_are_the_bills_readings(filled: Filled, dashboard: Server) -> None:
    body = get(dashboard, "/api/holder/readings?party=h1&period=2").json()
    with filled.hub.factory() as session:
        expected = list(session.scalars(select(StoredReading).where(StoredReading.party == "h1",
                                                                    StoredReading.period == 2)
                                        .order_by(StoredReading.ts_ms)))
    assert body["settled"] is True
    assert [r["id"] for r in body["readings"]] == [r.id for r in expected]
    assert [r["digest"] for r in body["readings"]] == [r.digest for r in expected]
    assert get(dashboard, "/api/holder/readings?party=h1&period=4").json()["settled"] is False  # still open


def test_proof_download_is_the_commands_file_and_verifies(filled: Filled, dashboard: Server, tmp_path: Path) -> None:
    """The household downloads the proof of one of its readings and checks it with `scb verify --proof`."""
    reading = get(dashboard, "/api/holder/readings?party=h2&period=1").json()["readings"][3]["id"]
    download = get(dashboard, f"/api/proof?reading={reading}")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == f'attachment; filename="proof-{reading}.json"'
    command = scb(filled, tmp_path, "proof", "export", str(reading))
    assert command.returncode == 0, command.stderr
    assert download.text == command.stdout  # byte for byte what `scb proof export` writes
    proof = tmp_path / f"proof-{reading}.json"
    proof.write_bytes(download.content)
    verified = scb(filled, tmp_path, "verify", "--proof", str(proof))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VALID" in verified.stdout


def test_proof_of_an_unsettled_or_unknown_reading_is_404_json(filled: Filled, dashboard: Server) -> None:
    with filled.hub.factory() as session:
        open_reading = session.scalar(select(StoredReading.id).where(StoredReading.period.is_(None)).limit(1))
    assert open_reading is not None
    answer = get(dashboard, f"/api/proof?reading={open_reading}")
    assert answer.status_code == 404 and "not settled yet" in answer.json()["error"]
    assert get(dashboard, "/api/proof?reading=99999999").status_code == 404


def test_csv_downloads_are_the_commands_files(filled: Filled, dashboard: Server, tmp_path: Path) -> None:
    for kind, query in (("bills", "?holder=h2"), ("readings", "?holder=h3&from=2030-06-21T11:00:00Z&to=2030-06-21T12:00Z"),
                        ("bills", "")):
        download = get(dashboard, f"/api/export/{kind}.csv{query}")
        assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
        args = ["export", kind, "--out", "-"]
        if "holder" in query:
            args += ["--holder", query.split("holder=")[1].split("&")[0]]
        if "from=" in query:
            args += ["--from", "2030-06-21T11:00:00Z", "--to", "2030-06-21T12:00Z"]
        out = io.StringIO()  # the command in this process (no interpreter start per file); no newline translation
        with contextlib.redirect_stdout(out):
            assert main(["--config", str(write_toml(filled.hub.config, tmp_path / "scb.toml")), *args]) == 0
        assert download.content == out.getvalue().encode() and out.getvalue().count("\r\n") > 1


@pytest.mark.parametrize("path, status, message", [
    ("/api/holder", 400, "give the holder"),
    ("/api/holder?party=h9", 404, "no holder h9"),
    ("/api/holder?party=a%20b", 400, "not a party id"),
    ("/api/holder?party=h1&x=1", 400, "unknown parameter x"),
    ("/api/holder/readings?party=h1", 400, "give the period"),
    ("/api/proof", 400, "give the reading"),
    ("/api/proof?reading=-1", 400, "whole number"),
    ("/api/export/bills.csv?holder=h9", 400, "no holder 'h9'"),
    ("/api/export/bills.csv?from=yesterday", 400, "ISO 8601"),
    ("/api/export/receipts.csv", 404, "export one of"),
])
def test_bad_requests(dashboard: Server, path: str, status: int, message: str) -> None:
    answer = get(dashboard, path)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
