"""The SolarProperty facade: offline against a fake JSON-RPC node (decoding by name, one block per snapshot, the
error mapping, one holder status), and against a real anvil (the same values web3 reads, snapshots that stay put).
"""
from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dashboard.data import COLLECTOR, HolderBoard
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, transaction, upgrade
from scb.errors import ChainRefused, ChainUnavailable, DataError
from scb.loop import Heartbeat, is_transient
from eth_utils import keccak

from settlement.chain import ChainClient, ContractReverted, NoContract, _canonical_type, dev_account
from settlement.contract_artifact import ArtifactError, load_artifact
from settlement.models import SettlementSystem
from settlement.settings import ethereum_settings
from settlement.solar_property import SolarProperty, check_abi
from settlement.supply import SupplyWatcher
from settlement.system import SystemRef
from tests.settlement.conftest import START_MS, Anvil, Hub, make_hub
from tests.settlement.fake_chain import ADDRESS, FakeNode, Revert
from tests.web3_reference import contract_of, web3_of

HOUR_MS = 3600_000
#: 2030-06-21T10:00:00Z: a summer morning, so that the bills are not zero
SUMMER_MS = 1_908_266_400_000
H1, H2, H3 = (dev_account(i).address for i in (1, 2, 3))
BENEFICIARY = dev_account(9).address
#: systemInfo of the fake: every field a different number, so a field read from the wrong position shows
SYSTEM_VIEW = (BENEFICIARY, 11, 22, 33, b"\x44" * 32, 3, 55, 66, 77, 88, 99, 111)
PERIOD_VIEW = (b"\x01" * 32, b"\x02" * 32, 10, 3600, 7200, 7300, 14500, 99)


def fake_client(node: FakeNode) -> ChainClient:
    settings = ethereum_settings(Config(data={"ethereum": {"rpc_url": "http://fake-node.invalid:8545"}}))
    return ChainClient(settings, provider=node)


def holder_view(account: str, index: int, share: int, status: int, debt: int = 0, good: bool = True) -> tuple:
    # HolderView: account, index, shareBps, status, holdingValue, equityPaid, debt, prepaid, inGoodStanding, nextDue,
    # peakPowerW (version 2)
    return (account, index, share, status, 1000 + index, 2000 + index, debt, 3000 + index, good,
            1_900_000_000 if debt else 0, 4000 + index)


@pytest.fixture
def node() -> FakeNode:
    fake = FakeNode()
    holders = {H1: holder_view(H1, 0, 5000, 1), H2: holder_view(H2, 1, 5000, 2),
               H3: holder_view(H3, 2, 0, 3, debt=7, good=False)}
    fake.views.update({
        "systemInfo": lambda sid: SYSTEM_VIEW if sid == 1 else (_ for _ in ()).throw(Revert("UnknownSystem", sid)),
        "periodInfo": lambda sid, pid: (
            PERIOD_VIEW + (pid == 1,) if pid == 1
            else (_ for _ in ()).throw(Revert("PeriodNotSettled", sid, pid))),
        "holderList": lambda sid: ([H1, H2, H3], [5000, 5000, 0]),
        "holderInfo": lambda sid, account: holders[account],
        "hubRole": lambda sid: b"\x07" * 32,
        "hasRole": lambda role, account: account == BENEFICIARY,
    })
    return fake


def test_views_are_decoded_by_name(node: FakeNode) -> None:
    chain = SolarProperty(fake_client(node), ADDRESS, 1)
    info = chain.system_info()
    assert (info.beneficiary, info.price_per_kwh_wei, info.total_value_wei, info.grace_period_s,
            info.mam_channel_root_hash, info.holder_count, info.grid_share_bps, info.last_period_id,
            info.last_period_end, info.registered_at, info.peak_power_w, info.repossession_fee_bps) == SYSTEM_VIEW
    period = chain.period_info(1)
    assert period is not None and period.readings_root_hex == "0x" + "01" * 32
    assert (period.reading_count, period.start, period.end, period.settled_at, period.due_time,
            period.generation_wh, period.cancelled) == (10, 3600, 7200, 7300, 14500, 99, True)
    assert chain.period_info(2) is None  # PeriodNotSettled is "no such period", not an error
    assert [(h.account, h.share_bps) for h in chain.holder_list()] == [(H1, 5000), (H2, 5000), (H3, 0)]
    h3 = chain.holder_info(H3)
    assert (h3.index, h3.debt_wei, h3.prepaid_wei, h3.in_good_standing, h3.next_due_time, h3.peak_power_w) == \
        (2, 7, 3002, False, 1_900_000_000, 4002)
    assert chain.is_hub(BENEFICIARY) and not chain.is_hub(H1)
    assert chain.version == 2


def test_event_reads_by_name_refuse_a_filter_the_node_cannot_apply(node: FakeNode) -> None:
    """`event_logs` takes any event of the contract's ABI: one it does not have reads as none (hub.ledger's
    tolerance of other artifacts), a filter on an argument the event does not index is refused before any log
    is asked for (the node would ignore it and hand back every holder's logs)."""
    node.views["deploymentBlock"] = lambda: 7  # where the one scan starts
    chain = SolarProperty(fake_client(node), ADDRESS, 1)
    assert chain.event_logs("NoSuchEvent", {"holder": H1}) == []
    with pytest.raises(ArtifactError, match="Paid has no indexed argument toDebt"):
        chain.event_logs("Paid", {"toDebt": 1})
    assert "eth_getLogs" not in node.requests
    assert chain.event_logs("Paid", {"holder": H1}) == [] and "eth_getLogs" in node.requests


def v1_node(node: FakeNode) -> FakeNode:
    """The fake as a version-1 contract: its committed runtime code, its ABI, its shorter views."""
    abi = load_artifact(1)["abi"]
    node.abi = abi
    node.functions = {keccak(text=f"{e['name']}({','.join(_canonical_type(i) for i in e['inputs'])})")[:4]: e
                      for e in abi if e.get("type") == "function"}
    node.code = load_artifact(1)["deployedBytecode"]
    node.views["systemInfo"] = lambda sid: SYSTEM_VIEW[:10]
    node.views["periodInfo"] = lambda sid, pid: PERIOD_VIEW
    holders = {H1: holder_view(H1, 0, 5000, 1)[:10], H2: holder_view(H2, 1, 5000, 2)[:10]}
    node.views["holderList"] = lambda sid: ([H1, H2], [5000, 5000])
    node.views["holderInfo"] = lambda sid, account: holders[account]
    return node


def test_a_version_1_contract_is_read_with_its_own_abi(node: FakeNode) -> None:
    """A community that stays on version 1 keeps working: the facade knows it by its code and reads the fields
    version 1 has; version-2 fields read as their defaults, version-2 operations are refused."""
    chain = SolarProperty(fake_client(v1_node(node)), ADDRESS, 1)
    assert chain.version == 1
    info = chain.system_info()
    assert (info.beneficiary, info.last_period_id, info.registered_at) == (BENEFICIARY, 66, 88)
    assert (info.peak_power_w, info.repossession_fee_bps) == (0, 0)
    period = chain.snapshot().period_info(1)
    assert period is not None and (period.generation_wh, period.cancelled) == (99, False)
    assert [(h.status, h.peak_power_w) for h in chain.holders()] == [("paying", 0), ("owned", 0)]
    assert chain.period_cancelled_events() == []
    with pytest.raises(ArtifactError, match="version 2"):
        chain.assign_share_call(H3, 100, 1000)
    with pytest.raises(ArtifactError, match="version 2"):
        chain.cancel_period_call(1)


def test_a_snapshot_reads_every_view_at_one_block(node: FakeNode) -> None:
    node.advance_per_request = 1  # a live chain: a new block after every request
    chain = SolarProperty(fake_client(node), ADDRESS, 1)
    snapshot = chain.snapshot()
    node.call_blocks.clear()
    snapshot.system_info()
    snapshot.holders()
    snapshot.period_info(1)
    assert len(node.call_blocks) == 6  # systemInfo, holderList, 3 x holderInfo, periodInfo
    assert {block for _name, block in node.call_blocks} == {hex(snapshot.block)}  # type: ignore[arg-type]
    assert snapshot.block_timestamp() == 1_900_000_000 + snapshot.block  # the pinned block's time, not the head's
    node.call_blocks.clear()
    chain.system_info()  # unpinned: the latest block
    assert node.call_blocks == [("systemInfo", "latest")]


def test_one_holder_status_the_contracts(node: FakeNode) -> None:
    """The status is the contract's HolderStatus, for supply decisions and the dashboard alike."""
    chain = SolarProperty(fake_client(node), ADDRESS, 1)
    assert [h.status for h in chain.holders()] == ["paying", "owned", "repossessed"]
    system = SystemRef(ref=1, chain_id=31337, contract=ADDRESS, system_id=1, hub=BENEFICIARY, channel="readings",
                       channel_root="A" * 81, holders={"h1": H1, "h2": H2, "h3": H3}, demo=True)
    watcher = SupplyWatcher(None, fake_client(node), system, None, None, None)  # type: ignore[arg-type]
    standings = watcher.standings()
    assert [(s.party, s.status, s.good, s.debt) for s in standings] == [
        ("h1", "paying", True, 0), ("h2", "owned", True, 0), ("h3", "repossessed", False, 7)]
    node.views["holderInfo"] = lambda sid, account: holder_view(account, 0, 100, 9)
    with pytest.raises(ArtifactError, match="HolderStatus 9"):
        chain.holder_info(H1)


def test_errors_map_onto_the_tree(node: FakeNode) -> None:
    client = fake_client(node)
    with pytest.raises(ContractReverted) as reverted:
        SolarProperty(client, ADDRESS, 4).system_info()
    assert reverted.value.name == "UnknownSystem" and reverted.value.args_ == (4,)
    assert str(reverted.value) == "systemInfo reverted: UnknownSystem(4)"
    # a revert is the chain saying no: Refused (slow schedule), never DataError (give up on the input)
    assert isinstance(reverted.value, ChainRefused) and not isinstance(reverted.value, DataError)
    assert is_transient(reverted.value)
    node.down = True
    with pytest.raises(ChainUnavailable, match="fake-node.invalid.*unreachable"):
        SolarProperty(client, ADDRESS, 1).system_info()
    node.down = False
    node.code = "0x"  # the chain was reset: nothing at the address
    with pytest.raises(NoContract, match="no contract code"):
        SolarProperty(client, ADDRESS, 1).system_info()


def test_the_facade_names_every_field_of_the_artifact() -> None:
    abi = load_artifact()["abi"]
    check_abi(abi)
    renamed = copy.deepcopy(abi)
    view = next(e for e in renamed if e.get("name") == "systemInfo")
    view["outputs"][0]["components"][7]["name"] = "latestPeriodId"  # a contract change the facade does not know
    with pytest.raises(ArtifactError, match="systemInfo returns"):
        check_abi(renamed)
    added = copy.deepcopy(abi)
    event = next(e for e in added if e.get("name") == "PeriodSettled")
    event["inputs"].append({"name": "extra", "type": "uint256", "indexed": False})
    with pytest.raises(ArtifactError, match="PeriodSettled"):
        check_abi(added)


def test_dashboard_holders_offline(node: FakeNode, tmp_path: Path) -> None:
    factory = _hub_database(tmp_path)
    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    board = HolderBoard(config, factory, cache_s=0, timeout_s=1, client_for=lambda: fake_client(node))
    body = board.holders()
    assert body["source"] == "chain" and body["error"] is None
    by_party = {h["party"]: h for h in body["holders"]}
    assert [by_party[p]["status"] for p in ("h1", "h2", "h3")] == ["paying", "owned", "repossessed"]
    assert by_party["h3"]["debt_wei"] == "7" and by_party["h1"]["equity_paid_wei"] == "2000"
    assert {block for _name, block in node.call_blocks} == {hex(body["block"])}  # one block for the whole board
    node.code = "0x"  # a reset chain: shown as an error with the last values, not a crash
    later = board.holders()
    assert later["source"] == "cache" and "no contract code" in later["error"]


def test_dashboard_collector_under_the_failure_policy(node: FakeNode, tmp_path: Path) -> None:
    factory = _hub_database(tmp_path)
    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    fatal: list[tuple[str, BaseException]] = []
    make = {"client": lambda: fake_client(node)}
    board = HolderBoard(config, factory, cache_s=0.05, timeout_s=1, client_for=lambda: make["client"]())
    hb = Heartbeat(tmp_path, "dashboard", min_interval_s=0)
    stop = threading.Event()
    thread = board.start(hb, stop, on_fatal=lambda name, exc: fatal.append((name, exc)))
    try:
        wait_for(lambda: COLLECTOR in hb.loops and hb.loops[COLLECTOR].ok_at is not None)
        assert board.holders()["source"] == "chain"
        node.down = True  # unreachable: shown in the heartbeat and on the page, the collector goes on
        wait_for(lambda: "unreachable" in (hb.loops[COLLECTOR].error or ""))
        assert board.holders()["source"] == "cache" and "unreachable" in board.holders()["error"]
        node.down = False
        wait_for(lambda: hb.loops[COLLECTOR].error is None)
        assert fatal == []

        def broken() -> ChainClient:
            raise KeyError("a bug")

        make["client"] = broken  # anything unexpected ends the process (here: recorded)
        wait_for(lambda: bool(fatal))
        assert [(name, type(exc)) for name, exc in fatal] == [(COLLECTOR, KeyError)]
        thread.join(timeout=30)
        assert not thread.is_alive()  # the loop ended: on_fatal is where the process exits
    finally:
        stop.set()


def test_a_page_does_not_wait_for_the_chain_while_the_collector_runs(node: FakeNode, tmp_path: Path) -> None:
    factory = _hub_database(tmp_path)
    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    board = HolderBoard(config, factory, cache_s=3600, timeout_s=1, client_for=lambda: fake_client(node))
    hb = Heartbeat(None, "dashboard")
    stop = threading.Event()
    board.start(hb, stop)
    try:
        wait_for(lambda: COLLECTOR in hb.loops and hb.loops[COLLECTOR].ok_at is not None)
        asked = len(node.requests)
        for _ in range(3):
            assert board.holders()["source"] == "chain"
        assert len(node.requests) == asked  # the pages were served from the collector's reading
    finally:
        stop.set()


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll until `condition` holds; the limit only stops a test that would otherwise hang."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _hub_database(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        session.add(SettlementSystem(chain_id=31337, contract=ADDRESS, system_id=1, hub=BENEFICIARY,
                                     channel="readings", channel_root="A" * 81,
                                     holders_json=json.dumps({"h1": H1, "h2": H2, "h3": H3}), demo=True))
    return factory


# ------------------------------------------------------------------------------------------------ real anvil


def test_the_facade_reads_what_web3_reads_and_snapshots_stay_put(hub: Hub) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    c = contract_of(hub.client, hub.system.contract)
    chain = SolarProperty(hub.client, hub.system.contract, hub.system.system_id)
    before = chain.snapshot()
    raw = c.functions.systemInfo(1).call()
    info = before.system_info()
    assert (info.beneficiary, info.price_per_kwh_wei, info.total_value_wei, info.grace_period_s,
            info.mam_channel_root_hash, info.holder_count, info.grid_share_bps, info.last_period_id,
            info.last_period_end, info.registered_at, info.peak_power_w, info.repossession_fee_bps) == tuple(raw)
    assert (info.peak_power_w, info.repossession_fee_bps) == (24_000, 0)  # the [settlement.demo] defaults
    period = before.period_info(1)
    assert period is not None and tuple(c.functions.periodInfo(1, 1).call()) == (
        period.readings_root, period.mam_root_hash, period.reading_count, period.start, period.end,
        period.settled_at, period.due_time, period.generation_wh, period.cancelled)
    for h in before.holders():
        assert tuple(c.functions.holderInfo(1, h.account).call()) == (
            h.account, h.index, h.share_bps, ["none", "paying", "owned", "repossessed"].index(h.status),
            h.holding_value_wei, h.equity_paid_wei, h.debt_wei, h.prepaid_wei, h.in_good_standing, h.next_due_time,
            h.peak_power_w)
    (event,) = before.period_settled_events(1)
    assert event.readings_root == period.readings_root and event.tx_hash == _row(hub, 1).tx_hash
    assert event.grid_energy_wh == 0  # nothing repossessed: no grid portion
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [2]
    assert before.system_info().last_period_id == 1  # the snapshot still reads its own block
    assert before.period_info(2) is None and before.period_settled_events(2) == []
    assert chain.snapshot().system_info().last_period_id == 2


def _row(hub: Hub, period_id: int):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from settlement.models import SettlementPeriod

    with hub.factory() as session:
        return session.scalars(select(SettlementPeriod).where(SettlementPeriod.period_id == period_id)).one()


def test_events_and_receipts_decode_as_web3_decodes_them(hub: Hub) -> None:
    """The facade decodes raw logs itself (settlement.abi); web3's event decoding is the reference."""
    from web3.logs import DISCARD

    from settlement import solar_property as sp

    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    c = contract_of(hub.client, hub.system.contract)
    chain = SolarProperty(hub.client, hub.system.contract, hub.system.system_id)

    def web3_events(name: str, cls: type) -> list[object]:
        logs = getattr(c.events, name)().get_logs(from_block=0, argument_filters={"systemId": 1})
        return [sp._from_abi(cls, dict(e["args"]), tx_hash="0x" + bytes(e["transactionHash"]).hex(),
                             block_number=int(e["blockNumber"])) for e in logs]

    registration = chain.registration()
    assert [registration] == web3_events("SystemRegistered", sp.SystemRegisteredEvent)
    assert registration is not None and len(registration.holders) == 3 and registration.mam_channel_root
    settled = chain.period_settled_events()
    assert settled == web3_events("PeriodSettled", sp.PeriodSettledEvent) and len(settled) == 1
    assert chain.billed_events(1) == web3_events("Billed", sp.BilledEvent)
    receipt = hub.client.rpc("eth_getTransactionReceipt", [settled[0].tx_hash])
    assert chain.settled_in(receipt["logs"]) == settled
    assert SolarProperty(hub.client, hub.system.contract, 2).settled_in(receipt["logs"]) == []  # another system
    assert chain.settled_in(hub.client.receipt(settled[0].tx_hash)["logs"]) == settled  # the client's receipt
    assert registration is not None
    registered = hub.client.receipt(registration.tx_hash)  # as settlement.system reads the new system's id
    by_web3 = web3_of(hub.client).eth.get_transaction_receipt(registration.tx_hash)  # type: ignore[arg-type]
    assert [(e.name, e.args, e.tx_hash, e.block_number, e.log_index)
            for e in sp.events_in(hub.client, hub.system.contract, "SystemRegistered", registered["logs"])] == \
        [("SystemRegistered", dict(e["args"]), "0x" + bytes(e["transactionHash"]).hex(), int(e["blockNumber"]),
          int(e["logIndex"])) for e in c.events.SystemRegistered().process_receipt(by_web3, errors=DISCARD)]



def test_money_events_decode_as_web3_decodes_them(tmp_path: Path, anvil: Anvil) -> None:
    """The money events hub.ledger reads by name (`event_logs`: Paid, Deposited, DepositWithdrawn, Repossessed,
    ShareOwned), every one for every holder, against web3's decoding; and hub.ledger's bills and payments as its
    web3 reading made them, field by field."""
    from hub import ledger
    from settlement import solar_property as sp

    hub = make_hub(tmp_path, anvil.url, SUMMER_MS)
    hub.run_until(SUMMER_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    c = contract_of(hub.client, hub.system.contract)
    chain = SolarProperty(hub.client, hub.system.contract, hub.system.system_id)
    (settled,) = chain.period_settled_events()
    system_id = hub.system.system_id
    h1, h2, h3 = (dev_account(i).address for i in (1, 2, 3))
    c.functions.deposit(system_id).transact({"from": h1, "value": 10**17})  # Deposited: the bill, then prepaid
    c.functions.withdrawDeposit(system_id, 10**16).transact({"from": h1})  # DepositWithdrawn
    c.functions.pay(system_id).transact({"from": h2, "value": 10**18})  # Paid, and the whole share: ShareOwned
    hub.client.mine(settled.due_time + 1)  # h3's bill falls due unpaid
    c.functions.repossess(system_id, h3).transact({"from": dev_account(9).address})  # Repossessed
    seen = set()
    for name in ledger.PAYMENT_EVENTS:
        for holder in (h1, h2, h3):
            reference = getattr(c.events, name)().get_logs(from_block=0, argument_filters={"systemId": system_id,
                                                                                           "holder": holder})
            assert chain.event_logs(name, {"holder": holder}) == [
                sp.EventLog(name, dict(e["args"]), "0x" + bytes(e["transactionHash"]).hex(), int(e["blockNumber"]),
                            int(e["logIndex"])) for e in reference]
            seen |= {name} if reference else set()
    assert seen == set(ledger.PAYMENT_EVENTS)  # each event was compared on logs, not on two empty lists
    assert chain.event_logs("Paid", {"holder": BENEFICIARY}) == []  # the filter is the node's, by topic

    # hub.ledger's output as its web3 reading made it (the same rows, field by field)
    def web3_payments(holder: str) -> list[dict[str, object]]:
        rows = []
        for name in ledger.PAYMENT_EVENTS:
            for e in getattr(c.events, name)().get_logs(from_block=0, argument_filters={"systemId": system_id,
                                                                                        "holder": holder}):
                rows.append({"event": name, "args": {k: str(v) for k, v in dict(e["args"]).items()
                                                     if k not in ("systemId", "holder")},
                             "tx": "0x" + bytes(e["transactionHash"]).hex(), "block": int(e["blockNumber"]),
                             "log_index": int(e["logIndex"]),
                             "time_s": int(web3_of(hub.client).eth.get_block(int(e["blockNumber"]))["timestamp"])})
        return sorted(rows, key=lambda r: (r["block"], r["log_index"]))

    for holder in (h1, h2, h3):
        assert ledger.payments(hub.client, hub.system, holder) == web3_payments(holder)
    (billed,) = c.events.Billed().get_logs(from_block=0)
    assert any(billed["args"]["amounts"])  # a summer period: bills that are not all zero
    assert {p: [(b.amount_wei, b.unpaid_wei, b.tx_hash, b.block_number) for b in bills]
            for p, bills in ledger.bills(hub.client, hub.system).items()} == \
        {int(billed["args"]["periodId"]): [(a, u, "0x" + bytes(billed["transactionHash"]).hex(),
                                            int(billed["blockNumber"]))
                                           for a, u in zip(billed["args"]["amounts"], billed["args"]["unpaid"])]}
