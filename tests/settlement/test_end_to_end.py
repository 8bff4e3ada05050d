"""The whole hub, as processes: anvil, `scb run` (tangle node, energy manager on an accelerated clock, MAM
publisher, settlement service), holders paying from their own accounts, one falling behind and repossessed;
then `scb verify` on random published addresses, `scb status`, and the supply decisions in the database."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from web3 import Web3

from settlement.chain import dev_account
from settlement.contract_artifact import load_artifact
from tests.conftest import REPO
from tests.settlement.conftest import free_port, start_anvil

pytestmark = pytest.mark.slow

#: midsummer morning: the panels produce, so bills are real money
START = "2030-06-21T08:00:00Z"
SPEED = 600  # one community hour = 6 real seconds
PERIODS = 5


def toml(tmp: Path, rpc_url: str) -> Path:
    path = tmp / "scb.toml"
    path.write_text(f"""
[hub]
id = "e2e-hub"
data_dir = "{tmp / 'data'}"

[ethereum]
rpc_url = "{rpc_url}"

[tangle_node]
port = {free_port()}

[mam]
api_port = {free_port()}
poll_interval_s = 0.2

[mam.channels.readings]
security = 1

[energy]
households = ["h1", "h2", "h3"]
sample_interval_s = 600
publish_window_s = 1200
clock_speed = {SPEED}
start = "{START}"

[settlement]
period_s = 3600
lateness_s = 1200
check_interval_s = 0.5
supply_interval_s = 1.0
retry_initial_s = 0.5
retry_max_s = 2.0

[settlement.demo]
grace_period_s = 7200
price_per_kwh_wei = 1000000000000000
""", encoding="utf-8")
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def scb(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_the_hub_end_to_end(tmp_path: Path) -> None:
    anvil = start_anvil()
    config = toml(tmp_path, anvil.url)
    logs = tmp_path / "data" / "logs"
    hub = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(config), "run"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=(tmp_path / "run.log").open("wb"),
                           start_new_session=True, env={**os.environ, "SCB_LOG_LEVEL": "INFO"})
    db = create_engine(f"sqlite:///{tmp_path / 'data' / 'scb.sqlite3'}")
    stop_paying = threading.Event()
    try:
        def one(sql: str, **params: Any) -> Any:
            try:
                with db.connect() as conn:
                    return conn.execute(text(sql), params).first()
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                return None

        system = wait_for("the demo system", lambda: one("SELECT contract, holders_json FROM settlement_systems"),
                          60, logs)
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        c = w3.eth.contract(address=system[0], abi=load_artifact()["abi"])
        holders = json.loads(system[1])
        h1, h2, h3 = holders["h1"], holders["h2"], holders["h3"]
        assert [h1, h2, h3] == [dev_account(i).address for i in (1, 2, 3)]
        c.functions.deposit(1).transact({"from": h1, "value": 10**17})  # h1 prepays its bills
        stranger = dev_account(9).address  # anyone may repossess; not the hub's account (its nonces are the hub's)

        def h2_pays_every_bill() -> None:  # until the hub stops: community time runs on while we verify
            while not stop_paying.is_set():
                debt = c.functions.supplyStatus(1, h2).call()[1]
                if debt:
                    c.functions.pay(1).transact({"from": h2, "value": debt})
                    payments.append(debt)
                stop_paying.wait(0.2)

        payments: list[int] = []
        payer = threading.Thread(target=h2_pays_every_bill, daemon=True)
        payer.start()
        repossessed_tx = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            last = c.functions.systemInfo(1).call()[7]
            if repossessed_tx is None and not c.functions.isInGoodStanding(1, h3).call():
                repossessed_tx = c.functions.repossess(1, h3).transact({"from": stranger})
            if last >= PERIODS and repossessed_tx is not None:
                break
            time.sleep(0.3)
        assert c.functions.systemInfo(1).call()[7] >= PERIODS, "not enough periods settled"
        assert repossessed_tx is not None, "h3 never fell out of good standing"
        assert payments, "h2 was never billed"
        wait_for("the repossession decision",
                 lambda: one("SELECT id FROM settlement_supply_decisions WHERE party='h3' AND status='repossessed'"),
                 30, logs)

        # verify random published readings by address, with the whole stack still running
        with db.connect() as conn:
            settled_addresses = [row[0] for row in conn.execute(text(
                "SELECT DISTINCT m.address FROM mam_messages m JOIN energy_readings r ON r.message_id = m.id "
                "JOIN settlement_proofs p ON p.reading_id = r.id"))]
        assert len(settled_addresses) >= 3 * PERIODS - 3  # three publish windows per period
        for address in random.Random(11).sample(settled_addresses, 3):
            result = scb(config, "verify", address, "--json")
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
            report = json.loads(result.stdout)
            assert report["verdict"] == "VALID"
            assert any(s["step"] == "channel" and s["ok"] for s in report["steps"])
        status = scb(config, "status")
        assert status.returncode == 0 and "h3" in status.stdout and "repossessed" in status.stdout, status.stdout
    finally:
        stop_paying.set()
        os.killpg(hub.pid, signal.SIGTERM)
        try:
            hub.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
        anvil.stop()

    with db.connect() as conn:
        decisions = conn.execute(text("SELECT party, decision, status, reason, applied FROM "
                                      "settlement_supply_decisions ORDER BY id")).all()
        periods = conn.execute(text("SELECT period_id, state FROM settlement_periods ORDER BY period_id")).all()
    db.dispose()
    assert [p[0] for p in periods] == list(range(1, len(periods) + 1))  # consecutive, none skipped
    assert all(state == "settled" for _, state in periods[:PERIODS])
    by_party: dict[str, list[tuple[str, str, str]]] = {}
    for party, decision, status, reason, applied in decisions:
        assert applied
        by_party.setdefault(party, []).append((decision, status, reason))
    assert [d for d, _, _ in by_party["h1"]] == ["supply"]  # prepaid: never cut
    assert by_party["h2"][-1][0] == "supply", by_party["h2"]
    h3 = by_party["h3"]
    assert h3[0][0] == "supply"
    assert ("grid", "paying") in [(d, s) for d, s, _ in h3] or h3[-1][1] == "repossessed"
    assert h3[-1][:2] == ("grid", "repossessed") and "0x" in h3[-1][2]
