"""`scb export readings|bills` (hub.export) over a hub that settled two periods on a real anvil: the CSV against
the database, the bills against the contract's own standing, the filters, and bad input refused with one line."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from hub.cli import main
from hub.export import BILL_COLUMNS, READING_COLUMNS
from settlement.chain import dev_account
from settlement.models import SETTLED, SettlementPeriod
from tests.conftest import REPO
from tests.settlement.conftest import Anvil, Hub, make_hub, start_anvil, write_toml
from tests.web3_reference import contract_of

#: 2030-06-21T10:00:00Z: a summer morning, so the periods have generation and the bills are not zero
SUMMER_MS = 1_908_266_400_000
HOUR_MS = 3_600_000
PRICE = 10**15  # tests/settlement/conftest.py's demo price per kWh


@dataclass
class Exported:
    hub: Hub
    config_file: Path
    deposit_h1: int


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    anvil: Anvil = start_anvil()
    try:
        hub = make_hub(tmp_path_factory.mktemp("export-hub"), anvil.url, SUMMER_MS)
        c = contract_of(hub.client, hub.system.contract)
        deposit = 10**17
        c.functions.deposit(hub.system.system_id).transact({"from": dev_account(1).address, "value": deposit})
        hub.run_until(SUMMER_MS + HOUR_MS + 20 * 60_000)
        assert hub.settle().settled == [1]
        hub.run_until(SUMMER_MS + 2 * HOUR_MS + 20 * 60_000)
        assert hub.settle().settled == [2]
        config_file = write_toml(hub.config, hub.config.data_dir.parent / "scb.toml")
        yield Exported(hub, config_file, deposit)
    finally:
        anvil.stop()


def scb(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scb --config CONFIG ARGS...` as a user runs it, in this process (a subprocess per call would cost the
    interpreter's start each time); argparse's exit for a bad choice is caught like the shell sees it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--config", str(config), *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(["scb", *args], code, out.getvalue(), err.getvalue())


def rows_of(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_readings_of_one_holder_match_the_database(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "h1.csv"
    done = scb(exported.config_file, "export", "readings", "--holder", "h1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    raw = out.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")  # RFC 4180 line ends, as spreadsheets expect
    header, rows = rows_of(raw.decode())
    assert header == list(READING_COLUMNS)
    with exported.hub.factory() as session:
        expected = list(session.scalars(select(StoredReading).where(StoredReading.party == "h1")
                                        .order_by(StoredReading.ts_ms, StoredReading.id)))
        period_1_wh = session.scalar(select(func.sum(StoredReading.delta_wh))
                                     .where(StoredReading.party == "h1", StoredReading.period == 1))
    assert [int(r["reading_id"]) for r in rows] == [r.id for r in expected]
    assert {r["party"] for r in rows} == {"h1"} and {r["circuit"] for r in rows} == {"consumption"}
    assert [r["digest"] for r in rows] == [r.digest for r in expected]
    assert sum(int(r["delta_wh"]) for r in rows if r["period"] == "1") == period_1_wh
    assert f"{len(rows)} readings rows written" in done.stderr


def test_readings_time_window_is_half_open(exported: Exported) -> None:
    done = scb(exported.config_file, "export", "readings", "--from", "2030-06-21T10:30:00Z",
               "--to", "2030-06-21T11:00:00", "--out", "-")
    assert done.returncode == 0, done.stderr
    _, rows = rows_of(done.stdout)
    low, high = SUMMER_MS + 30 * 60_000, SUMMER_MS + HOUR_MS
    with exported.hub.factory() as session:
        count = session.scalar(select(func.count(StoredReading.id))
                               .where(StoredReading.ts_ms >= low, StoredReading.ts_ms < high))
    assert rows and len(rows) == count
    assert all(low <= int(r["ts_ms"]) < high for r in rows)
    assert {r["party"] for r in rows} >= {"system", "h1", "h2", "h3"}  # the system's export has every meter


def test_bills_against_the_contract(exported: Exported) -> None:
    done = scb(exported.config_file, "export", "bills", "--out", "-")
    assert done.returncode == 0, done.stderr
    header, rows = rows_of(done.stdout)
    assert header == list(BILL_COLUMNS)
    hub = exported.hub
    with hub.factory() as session:
        periods = {p.period_id: p for p in session.scalars(select(SettlementPeriod)
                                                            .where(SettlementPeriod.state == SETTLED))}
    assert sorted({int(r["period_id"]) for r in rows}) == [1, 2]
    assert len(rows) == 2 * len(hub.system.holders)
    c = contract_of(hub.client, hub.system.contract)
    shares = dict(zip(*c.functions.holderList(hub.system.system_id).call()))
    for r in rows:
        period = periods[int(r["period_id"])]
        assert r["settle_tx"] == period.tx_hash and int(r["generation_wh"]) == period.generation_wh
        # the contract's rule (docs/contract.md): the smaller of the consumption and the share of the generation,
        # times the price per kWh
        billed_bps_wh = min(int(r["consumption_wh"]) * 10_000, period.generation_wh * shares[r["account"]])
        assert int(r["amount_wei"]) == billed_bps_wh * PRICE // (1000 * 10_000) > 0
        assert int(r["amount_wei"]) == int(r["from_deposit_wei"]) + int(r["unpaid_wei"])
    by_party: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_party.setdefault(r["party"], []).append(r)
    # h1's deposit paid its bills; the others' bills became debt, which is what the contract says they owe
    assert all(int(r["unpaid_wei"]) == 0 for r in by_party["h1"])
    h1 = c.functions.supplyStatus(hub.system.system_id, dev_account(1).address).call()
    assert h1[0] == exported.deposit_h1 - sum(int(r["amount_wei"]) for r in by_party["h1"])
    for party in ("h2", "h3"):
        debt = c.functions.supplyStatus(hub.system.system_id, hub.system.holders[party]).call()[1]
        assert debt == sum(int(r["unpaid_wei"]) for r in by_party[party]) > 0


def test_bills_of_one_holder_by_account_and_period_start(exported: Exported) -> None:
    account = exported.hub.system.holders["h2"]
    done = scb(exported.config_file, "export", "bills", "--holder", account.lower(), "--from", "2030-06-21T11:00Z",
               "--out", "-")
    assert done.returncode == 0, done.stderr
    _, rows = rows_of(done.stdout)
    assert [(r["party"], r["period_id"]) for r in rows] == [("h2", "2")]


@pytest.mark.parametrize("args, message", [
    (["readings", "--holder", "nobody"], "scb: no holder 'nobody' in this hub (holders: h1, h2, h3)"),
    (["readings", "--from", "yesterday"], "scb: --from must be an ISO 8601 date or date-time"),
    (["bills", "--from", "2030-06-22", "--to", "2030-06-21"], "scb: --to must be later than --from"),
    (["receipts"], "invalid choice: 'receipts'"),
])
def test_bad_input_is_one_line_and_writes_nothing(exported: Exported, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("previous\n")
    done = scb(exported.config_file, "export", *args, "--out", str(out))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert out.read_text() == "previous\n"
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind


def test_unreachable_chain_leaves_the_file_alone(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "bills.csv"
    out.write_text("previous\n")
    config = exported.config_file.read_text().replace(exported.hub.config.data["ethereum"]["rpc_url"],
                                                      "http://127.0.0.1:9")
    other = tmp_path / "scb.toml"
    other.write_text(config)
    done = scb(other, "export", "bills", "--out", str(out))
    assert done.returncode != 0 and "unreachable" in done.stderr and "Traceback" not in done.stderr
    assert out.read_text() == "previous\n"


#: what web3 brings with it; hub.ledger reads the chain without any of it (the dashboard forks share no page of it)
WEB3_PACKAGES = ("web3", "eth_account", "eth_abi", "py_ecc", "eth_utils")
_LEDGER_DRIVER = """
import dataclasses, json, sys
from hub import ledger
from scb.config import Config
from settlement.chain import ChainClient
from settlement.settings import ethereum_settings
from settlement.system import SystemRef

rpc_url, system, account, heavy = sys.argv[1:]
system = SystemRef(**json.loads(system))
client = ChainClient(ethereum_settings(Config(data={"ethereum": {"rpc_url": rpc_url}})))
bills = {period: [dataclasses.asdict(b) for b in found] for period, found in ledger.bills(client, system).items()}
payments = ledger.payments(client, system, account)
print(json.dumps({"bills": bills, "payments": payments,
                  "imported": sorted(m for m in json.loads(heavy) if m in sys.modules)}))
"""


def test_ledger_reads_the_chain_without_web3(exported: Exported) -> None:
    """hub.ledger's bills and payments (what `scb export bills` and the household page read) in a fresh
    interpreter: the same answers as here, and none of web3's packages imported on the way."""
    from hub import ledger

    hub = exported.hub
    h1 = dev_account(1).address
    proc = subprocess.run([sys.executable, "-c", _LEDGER_DRIVER, hub.config.data["ethereum"]["rpc_url"],
                           json.dumps(dataclasses.asdict(hub.system)), h1, json.dumps(WEB3_PACKAGES)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    read = json.loads(proc.stdout)
    assert read["imported"] == []
    assert read["bills"] == {str(p): [dataclasses.asdict(b) for b in found]
                             for p, found in ledger.bills(hub.client, hub.system).items()} and len(read["bills"]) == 2
    assert read["payments"] == ledger.payments(hub.client, hub.system, h1)
    assert [p["event"] for p in read["payments"]] == ["Deposited"]  # the fixture's deposit
