"""Settlement on anvil made to behave like a public chain: automine off (transactions wait in the pool), a base-fee
spike above a pending transaction's max fee (replaced, then mined), a dropped transaction (sent again), a nonce
taken by an operator's own transaction (re-signed), reorgs before and after finality (settled again, once), fee
caps that wait, legacy gasPrice, and a provider-like proxy (eth_getLogs over 1,000 blocks refused, 429 and
"limit exceeded" now and then) on a chain of more than 10,000 blocks: settlement, supply decisions and
`scb verify` all through it."""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from sqlalchemy import select

from hub.verification import verify_hub_address
from mam_client.models import OutboxMessage
from settlement.chain import dev_account
from settlement.clock import ChainClock
from settlement.models import PREPARED, SETTLED, SUBMITTED, SettlementPeriod, SettlementTransaction, SupplyDecision
from settlement.supply import LoggingActuator, SupplyWatcher
from settlement.verify import VALID
from tests.settlement.conftest import START_MS, Anvil, Hub, make_hub, start_anvil
from tests.settlement.rpc_proxy import RpcProxy
from tests.web3_reference import contract_of, web3_of

HOUR_MS = 3600_000
GWEI = 10**9


def rpc(anvil: Anvil, method: str, *params: Any) -> Any:
    """A call straight to anvil (not through the hub's client or the proxy)."""
    answer = requests.post(anvil.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                           timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def mine(anvil: Anvil, blocks: int = 1) -> None:
    rpc(anvil, "anvil_mine", hex(blocks))


def periods(hub: Hub) -> list[SettlementPeriod]:
    with hub.factory() as session:
        return list(session.scalars(select(SettlementPeriod).order_by(SettlementPeriod.period_id)))


def transactions(hub: Hub) -> list[SettlementTransaction]:
    with hub.factory() as session:
        return list(session.scalars(select(SettlementTransaction).order_by(SettlementTransaction.id)))


def settled_event_periods(hub: Hub, anvil: Anvil) -> list[int]:
    """PeriodSettled events on the canonical chain, read straight from anvil in one request."""
    logs = rpc(anvil, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": hub.system.contract})
    c = contract_of(hub.client, hub.system.contract)
    event = c.events.PeriodSettled()
    out = []
    for entry in logs:
        try:
            decoded = event.process_log({**entry, "topics": [bytes.fromhex(t[2:]) for t in entry["topics"]],
                                         "data": bytes.fromhex(entry["data"][2:]),
                                         "blockNumber": int(entry["blockNumber"], 16),
                                         "transactionIndex": int(entry["transactionIndex"], 16),
                                         "logIndex": int(entry["logIndex"], 16)})
        except Exception:  # noqa: BLE001 - another event of the contract
            continue
        out.append(int(decoded["args"]["periodId"]))
    return out


@pytest.fixture
def pool(tmp_path: Path, anvil: Anvil) -> Hub:
    """A hub whose chain mines only when told (automine off after the bootstrap), replacing after 1 s."""
    hub = make_hub(tmp_path, anvil.url, ethereum__replace_after_s=1.0)
    hub.settler.receipt_wait_s = 0.3
    rpc(anvil, "evm_setAutomine", False)
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)  # period 1 closed
    return hub


def settle_pending(hub: Hub) -> SettlementPeriod:
    report = hub.settle()
    assert report.settled == [] and "not mined yet" in (report.waiting or ""), report
    (row,) = periods(hub)
    assert row.state == SUBMITTED
    return row


def test_fee_spike_above_a_pending_transactions_max_fee_is_replaced_and_mined(pool: Hub, anvil: Anvil) -> None:
    row = settle_pending(pool)
    (first,) = transactions(pool)
    assert first.tx_hash == row.tx_hash and first.reason == "first"
    spike = 4 * int(first.max_fee_wei)
    rpc(anvil, "anvil_setNextBlockBaseFeePerGas", hex(spike))
    mine(anvil)
    assert pool.client.receipt(row.tx_hash) is None  # its max fee is below the base fee: it cannot be mined
    time.sleep(1.1)  # replace_after_s
    assert pool.settle().settled == []
    first, second = transactions(pool)
    assert second.reason == "replacement" and second.nonce == first.nonce
    assert int(second.max_fee_wei) >= spike  # what the chain asks now
    assert int(second.tip_wei) * 8 >= int(first.tip_wei) * 9  # +12.5 % at least
    mine(anvil)
    assert pool.settle().settled == [1]
    (row,) = periods(pool)
    assert row.state == SETTLED and row.tx_hash == second.tx_hash
    assert pool.client.receipt(first.tx_hash) is None
    assert settled_event_periods(pool, anvil) == [1]


def test_a_dropped_transaction_is_sent_again(pool: Hub, anvil: Anvil) -> None:
    row = settle_pending(pool)
    rpc(anvil, "anvil_dropTransaction", row.tx_hash)
    assert not pool.client.known(row.tx_hash)
    pool.settle()
    assert pool.client.known(row.tx_hash)  # the same signed bytes, sent again
    mine(anvil)
    assert pool.settle().settled == [1]
    assert [t.tx_hash for t in transactions(pool)] == [row.tx_hash]
    assert settled_event_periods(pool, anvil) == [1]


def test_a_nonce_taken_by_another_transaction_is_re_signed_with_the_next(pool: Hub, anvil: Anvil) -> None:
    row = settle_pending(pool)
    rpc(anvil, "anvil_dropTransaction", row.tx_hash)
    # the operator sends something of their own from the hub account, with that very nonce
    hub_key = dev_account(0)
    fees = pool.client.fees()
    manual = hub_key.sign_transaction({"to": hub_key.address, "value": 1, "nonce": row.nonce, "gas": 21_000,
                                       "chainId": 31337, **fees.tx_fields()})
    rpc(anvil, "eth_sendRawTransaction", "0x" + bytes(manual.raw_transaction).hex())
    mine(anvil)
    pool.settle()
    first, second = transactions(pool)
    assert second.reason == "new nonce" and second.nonce == first.nonce + 1
    mine(anvil)
    assert pool.settle().settled == [1]
    assert settled_event_periods(pool, anvil) == [1]


def test_reorg_before_finality_settles_again_once(tmp_path: Path, anvil: Anvil) -> None:
    hub = make_hub(tmp_path, anvil.url)
    # after the bootstrap (its deployment waits for the depth too, and automine makes no blocks on its own)
    hub.client.settings = dataclasses.replace(hub.client.settings, confirmations=3)
    hub.settler.receipt_wait_s = 0.3
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    snapshot = rpc(anvil, "evm_snapshot")
    report = hub.settle()
    assert report.settled == [] and "1 of 3 confirmations" in (report.waiting or ""), report
    (row,) = periods(hub)
    assert row.block_hash is not None
    rpc(anvil, "evm_revert", snapshot)  # the block with the settlement is gone...
    mine(anvil, 3)  # ...and another branch grows in its place
    assert hub.client.receipt(row.tx_hash) is None
    report = hub.settle()  # sees the reorg, sends the same transaction again
    assert report.settled == []
    mine(anvil, 2)
    assert hub.settle().settled == [1]
    (row,) = periods(hub)
    assert row.state == SETTLED and hub.client.block_hash(row.block_number) == row.block_hash
    assert settled_event_periods(hub, anvil) == [1]


def test_reorg_after_finality_is_found_by_the_root_check(tmp_path: Path, anvil: Anvil) -> None:
    hub = make_hub(tmp_path, anvil.url)
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    snapshot = rpc(anvil, "evm_snapshot")
    assert hub.settle().settled == [1]
    rpc(anvil, "evm_revert", snapshot)
    mine(anvil, 2)
    assert hub.settler.check_roots() == [1]
    assert periods(hub)[0].state == SUBMITTED
    assert hub.settle().settled == [1]
    assert settled_event_periods(hub, anvil) == [1]
    assert hub.settler.check_roots() == []


def test_a_fee_above_the_cap_waits_then_settles(tmp_path: Path, anvil: Anvil) -> None:
    hub = make_hub(tmp_path, anvil.url)
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    rpc(anvil, "anvil_setNextBlockBaseFeePerGas", hex(50 * GWEI))
    mine(anvil)
    hub.client.settings = dataclasses.replace(hub.client.settings, max_fee_wei=20 * GWEI)
    report = hub.settler.run()
    assert report.trouble == "fee-cap" and "above ethereum.max_fee_gwei" in (report.waiting or "")
    assert transactions(hub) == [] and periods(hub)[0].state == PREPARED  # nothing signed, nothing paid
    from hub.status import collect_status

    status = collect_status(hub.factory)["settlement"]
    assert status["trouble"] == "fee-cap" and "waiting for the base fee to fall" in status["last_error"]
    mine(anvil, 40)  # empty blocks: the base fee falls by 1/8 per block
    report = hub.settler.run()
    assert report.settled == [1], report
    assert collect_status(hub.factory)["settlement"]["trouble"] is None
    (tx,) = transactions(hub)
    assert int(tx.max_fee_wei) <= 20 * GWEI


def test_legacy_gas_price(tmp_path: Path, anvil: Anvil) -> None:
    hub = make_hub(tmp_path, anvil.url, ethereum__tx_type="legacy")
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    (tx,) = transactions(hub)
    assert tx.tip_wei is None
    onchain = web3_of(hub.client).eth.get_transaction(tx.tx_hash)
    assert onchain["type"] == 0 and onchain["gasPrice"] == int(tx.max_fee_wei)


def test_settlements_signed_by_the_keystore_account(tmp_path: Path, anvil: Anvil) -> None:
    account = Account.create()
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    keystore, password = secrets / "hub.keystore.json", secrets / "hub.password"
    password.write_text("correct horse battery staple\n", encoding="utf-8")
    keystore.write_text(json.dumps(Account.encrypt(account.key, "correct horse battery staple")), encoding="utf-8")
    keystore.chmod(0o600)
    password.chmod(0o600)
    rpc(anvil, "anvil_setBalance", account.address, hex(10**19))
    hub = make_hub(tmp_path, anvil.url, ethereum__keystore_file=str(keystore), ethereum__password_file=str(password))
    assert hub.client.sender == account.address
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    (row,) = periods(hub)
    assert web3_of(hub.client).eth.get_transaction(row.tx_hash)["from"] == account.address


# ------------------------------------------------------------------------------------------------ a provider


@pytest.fixture
def long_chain() -> Iterator[tuple[Anvil, RpcProxy]]:
    # A chain already 12,000 blocks long: its genesis is block 12,000. Why not anvil_mine(12000): anvil mines
    # ever slower as its chain grows (minutes for 10,000 blocks on a loaded CI machine); what a provider's limits
    # see is the block numbers, and the deployment block is found by the same search on either chain.
    node = start_anvil(extra=["--number", "12000"])
    proxy = RpcProxy(node.url, max_log_blocks=1000, http_429_every=13, rpc_limit_every=29).start()
    try:
        yield node, proxy
    finally:
        proxy.stop()
        node.stop()


def test_settlement_supply_and_verify_through_a_provider_on_a_long_chain(tmp_path: Path, long_chain) -> None:
    anvil, proxy = long_chain
    hub = make_hub(tmp_path, proxy.url)
    floor = hub.client.log_floor(hub.system.contract)
    assert floor > 12_000  # deployed after the 12,000 blocks, found by the client and kept
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1, 2]
    mine(anvil, 1_500)  # more than one of the provider's ranges past the deployment
    watcher = SupplyWatcher(hub.factory, hub.client, hub.system, LoggingActuator(), hub.clock,
                            ChainClock(hub.client, True))
    assert len(watcher.run()) == 3  # one decision per holder, from standing through the provider
    with hub.factory() as session:
        assert session.scalar(select(SupplyDecision).limit(1)) is not None
        message = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
    batches = proxy.counters.batches
    on_hub = verify_hub_address(hub.config, message.address, factory=hub.factory, transport=hub.tangle)
    assert on_hub.verdict == VALID, on_hub.text()
    c = proxy.counters
    assert c.batches > batches  # the message's verifyReading calls went as a JSON-RPC batch through the provider
    assert c.range_refused >= 1 and c.http_429 >= 1 and c.rpc_limited >= 1, c
    assert c.log_ranges and all(hi - lo + 1 <= 1000 for lo, hi in c.log_ranges)
    assert all(lo >= floor for lo, _ in c.log_ranges)  # never below the deployment block
    assert max(hi for _, hi in c.log_ranges) >= floor + 1_500  # verify's scans reached the head
    # an auditor's machine: no hub database; the contract's deploymentBlock gives the floor in one call (this
    # anvil has no state before its genesis block 12,000, so a search over historical code would give up and
    # the scans would start at block 0)
    before = len(c.log_ranges)
    away = verify_hub_address(hub.config, message.address, factory=None, transport=hub.tangle,
                              contract=hub.system.contract)
    assert away.verdict == VALID, away.text()
    assert len(c.log_ranges) > before and all(lo >= floor and hi - lo + 1 <= 1000 for lo, hi in c.log_ranges)


def test_the_hub_accounts_balance_in_scb_status(hub: Hub, anvil: Anvil, capsys: pytest.CaptureFixture[str]) -> None:
    from hub.commands import print_status
    from hub.status import collect_status
    from settlement.health import record_hub_account

    record_hub_account(hub.factory, hub.client, holders=3)
    balance = int(rpc(anvil, "eth_getBalance", hub.client.sender, "latest"), 16)
    price = int(rpc(anvil, "eth_gasPrice"), 16)
    account = collect_status(hub.factory)["settlement"]["hub_account"]
    assert account["account"] == hub.client.sender and int(account["balance_wei"]) == balance
    # before any settlement: the worst-case estimate, 160,000 + 30,000 per holder
    assert account["settlements_funded"] == balance // (250_000 * price)
    print_status({"processes": [], "readings": None, "outbox": None, "alerts": [],
                  "settlement": {**collect_status(hub.factory)["settlement"]}})
    assert f"hub account {hub.client.sender}: {balance / 10**18:.6f} ether" in capsys.readouterr().out


def test_deploy_and_register_with_the_approvers_keystore_then_the_hub_settles(tmp_path: Path, anvil: Anvil) -> None:
    from tests.settlement.conftest import hub_config, write_toml
    from tests.settlement.test_verify import scb

    approver = Account.create()
    rpc(anvil, "anvil_setBalance", approver.address, hex(10**18))
    keystore, password = tmp_path / "approver.json", tmp_path / "approver.password"
    password.write_text("approver's secret", encoding="utf-8")
    keystore.write_text(json.dumps(Account.encrypt(approver.key, "approver's secret")), encoding="utf-8")
    keystore.chmod(0o600)
    password.chmod(0o600)
    holders = {f"h{i}": dev_account(i).address for i in (1, 2, 3)}
    toml = write_toml(hub_config(tmp_path, anvil.url, settlement__holders=holders), tmp_path / "scb.toml")
    secret_flags = ["--keystore", str(keystore), "--password-file", str(password)]
    deployed = scb("--config", str(toml), "chain", "deploy", *secret_flags)
    assert deployed.returncode == 0, deployed.stderr
    contract = deployed.stdout.strip()
    registered = scb("--config", str(toml), "chain", "register-system", "--contract", contract, *secret_flags)
    assert registered.returncode == 0, registered.stderr
    system_id = int(registered.stdout.strip())
    assert f"signed by {approver.address}: hub {dev_account(0).address}" in registered.stderr
    assert "approver's secret" not in registered.stderr + deployed.stderr
    hub = make_hub(tmp_path, anvil.url, ethereum__contract_address=contract, settlement__system_id=system_id,
                   settlement__holders=holders)
    assert (hub.system.contract, hub.system.system_id, hub.system.demo) == (contract, system_id, False)
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    assert web3_of(hub.client).eth.get_transaction(periods(hub)[0].tx_hash)["from"] == dev_account(0).address


def test_a_transaction_signed_before_transactions_were_recorded_still_settles_once(
        hub: Hub, anvil: Anvil, monkeypatch: pytest.MonkeyPatch) -> None:
    from scb.db import transaction

    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    real_send = hub.client.send
    monkeypatch.setattr(hub.client, "send", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt("power cut")))
    with pytest.raises(KeyboardInterrupt):
        hub.settle()
    monkeypatch.setattr(hub.client, "send", real_send)
    # a period submitted by an SCB before migration 0005: the hash and bytes on the period row only
    with transaction(hub.factory) as session:
        session.query(SettlementTransaction).delete()
    (row,) = periods(hub)
    assert hub.settle().settled == [1]
    assert hub.client.receipt(row.tx_hash)["status"] == 1  # the very bytes signed before, sent now
    assert settled_event_periods(hub, anvil) == [1]


def test_interval_mining_settles_once_the_receipt_is_deep_enough(tmp_path: Path) -> None:
    node = start_anvil(extra=["--block-time", "1"])
    try:
        hub = make_hub(tmp_path, node.url)
        hub.client.settings = dataclasses.replace(hub.client.settings, confirmations=3)
        hub.settler.receipt_wait_s = 0.5
        hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
        seen: list[str] = []
        deadline = time.monotonic() + 120  # a generous ceiling: blocks come every second
        while time.monotonic() < deadline:
            report = hub.settle()
            if report.settled:
                break
            seen.append(report.waiting or "")
            time.sleep(0.5)
        assert report.settled == [1], seen
        assert any("of 3 confirmations" in w for w in seen)  # it waited for the depth, not for the receipt alone
        (row,) = periods(hub)
        assert hub.client.block_number() - row.block_number + 1 >= 3
    finally:
        node.stop()
