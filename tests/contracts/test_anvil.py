"""One full life cycle of a system on a real node: anvil (npm @foundry-rs/anvil), started and stopped here.

The in-process EthereumTesterProvider is py-evm; anvil is revm behind JSON-RPC, the chain the hub runs
against (./start_scb.sh). The same artifact, the same helpers, the same custom errors must work on both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterator

import pytest
from eth_utils import keccak
from web3 import Web3

from settlement import merkle
from tests.conftest import REPO, free_port
from tests.contracts.solar import PeriodClock, Solar, anvil_travel, expected_bill, expected_holding

ANVIL = REPO / "node_modules" / ".bin" / "anvil"



@pytest.fixture(scope="module")
def anvil() -> Iterator[Web3]:
    assert ANVIL.exists(), "node_modules/.bin/anvil missing: run ./start_scb.sh setup"
    port = free_port()
    # node_modules/.bin/anvil is a node shim that spawns the platform binary: run it in its own process group
    # so that stopping it stops both, even if the shim has to be killed.
    proc = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--accounts", "10", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 30}))
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"anvil exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if w3.is_connected() and w3.eth.chain_id:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("anvil did not start within 60 s")
            time.sleep(0.1)
        yield w3
    finally:
        _stop(proc)
        if proc.stderr:
            proc.stderr.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process group this fixture created (the shim and its anvil child)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def test_life_cycle_on_anvil(anvil: Web3) -> None:
    w3 = anvil
    a = w3.eth.accounts
    admin, approver, hub, beneficiary, h1, h2, stranger = a[0], a[1], a[2], a[3], a[4], a[5], a[6]
    solar = Solar.deploy(w3, admin, approver, anvil_travel(w3))
    price, total, grace = 10**14, 2 * 10**18, 86400
    system, _ = solar.register(approver, [h1, h2], [6000, 4000], hub=hub, beneficiary=beneficiary, price=price, total_value=total, grace=grace)

    # period 1: h1 prepaid, h2 not; the readings root is a real tree
    digests = [keccak(text=f"anvil reading {i}") for i in range(20)]
    tree = merkle.build_reading_tree(digests)
    solar.transact("deposit", system, sender=h1, value=10**17)
    clock = PeriodClock(solar, system, hub)
    receipt = clock.settle([4000, 3000], generation=8000, root=tree.root, count=len(digests))
    b1, b2 = expected_bill(4000, 8000, 6000, price), expected_bill(3000, 8000, 4000, price)
    assert solar.events(receipt, "Billed")[0]["amounts"] == [b1, b2]
    assert solar.call("supplyStatus", system, h1) == [10**17 - b1, 0, 0, True, False]
    assert all(solar.call("verifyReading", system, 1, d, merkle.reading_proof(tree, d)) for d in digests[:5])
    assert not solar.call("verifyReading", system, 1, keccak(b"forged"), merkle.reading_proof(tree, 0))

    # a retried settlement reverts with its custom error, decoded from the node's JSON-RPC error
    (ev,) = solar.events(receipt, "PeriodSettled")
    r = solar.reverts("settle", system, 1, ev["start"], ev["end"], tree.root, "9" * 81, 20, 8000, [0, 0], sender=hub)
    assert (r.name, r.args) == ("PeriodAlreadySettled", (system, 1))
    r = solar.reverts("settle", system, 2, ev["end"], ev["end"] + 1, tree.root, "9" * 81, 20, 8000, [0, 0], sender=stranger)
    assert r.name == "AccessControlUnauthorizedAccount"

    # grace runs out for h2: anyone repossesses; h2's equity net of debt comes back
    solar.transact("pay", system, sender=h2, value=b2 + 5 * 10**16)
    clock.settle([0, 3000], generation=8000)
    solar.set_next_timestamp(solar.now() + grace + 10)
    w3.provider.make_request("evm_mine", [])
    assert not solar.call("isInGoodStanding", system, h2)
    receipt = solar.transact("repossess", system, h2, sender=stranger)
    (rep,) = solar.events(receipt, "Repossessed")
    assert (rep["equityReturned"], rep["debtRecovered"]) == (5 * 10**16 - b2, b2)
    assert solar.system(system)["gridShareBps"] == 4000

    # h1 buys their share outright; everyone withdraws; the contract ends holding only h1's unused deposit
    solar.transact("pay", system, sender=h1, value=expected_holding(total, 6000))
    assert solar.holder(system, h1)["status"] == 2
    for account in (beneficiary, h2):
        solar.transact("withdraw", sender=account)
    solar.transact("withdrawDeposit", system, solar.holder(system, h1)["prepaid"], sender=h1)
    assert solar.balance() == 0
