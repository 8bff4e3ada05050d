"""SolarProperty, function by function: success paths, every custom error, role checks by strangers.

Runs on web3's in-process EthereumTesterProvider (py-evm). Expected amounts are derived from the issue's
formulas (tests/contracts/solar.py: expected_bill, expected_holding), not from the contract.
"""
from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractCustomError

from settlement import merkle
from settlement.contract_artifact import load_artifact
from tests.contracts.conftest import SHARES, Accounts
from tests.contracts.solar import (
    MAX_HOLDER_PEAK_W,
    SYSTEM_PEAK_W,
    TRYTES_A,
    TRYTES_B,
    PeriodClock,
    compile_contract,
    decode_revert,
    Solar,
    eth_tester_travel,
    expected_bill,
    expected_holding,
)

PAYING, OWNED, REPOSSESSED = 1, 2, 3
PRICE = 10**15
TOTAL = 10**18
GRACE = 7 * 86400
APPROVER_ROLE = keccak(text="APPROVER_ROLE")
HUB_ROLE = keccak(text="HUB_ROLE")


def hub_role(system_id: int) -> bytes:
    return keccak(abi_encode(["bytes32", "uint256"], [HUB_ROLE, system_id]))


def register_args(a: Accounts, **over: object) -> list[object]:
    args = {
        "hub": a.hub,
        "beneficiary": a.beneficiary,
        "price": PRICE,
        "total": TOTAL,
        "grace": GRACE,
        "peak": SYSTEM_PEAK_W,
        "fee": 0,
        "channel": TRYTES_A,
        "holders": a.holders,
        "shares": SHARES,
        "peaks": None,
    }
    args.update(over)
    terms = tuple(args[k] for k in ("hub", "beneficiary", "price", "total", "grace", "peak", "fee"))
    peaks = args["peaks"] if args["peaks"] is not None else [MAX_HOLDER_PEAK_W] * len(args["holders"])  # type: ignore[arg-type]
    return [terms, args["channel"], args["holders"], args["shares"], peaks]


# ------------------------------------------------------------------------------------------------ deployment


def test_constructor_grants_roles_and_rejects_zero_addresses(chain: tuple[Web3, object], accts: Accounts) -> None:
    w3, tester = chain
    s = Solar.deploy(w3, accts.admin, accts.approver, eth_tester_travel(tester))
    assert s.call("hasRole", b"\x00" * 32, accts.admin)
    assert s.call("hasRole", APPROVER_ROLE, accts.approver)
    assert not s.call("hasRole", APPROVER_ROLE, accts.admin)
    assert s.call("APPROVER_ROLE") == APPROVER_ROLE and s.call("HUB_ROLE") == HUB_ROLE
    assert s.call("MAX_HOLDERS") == 64 and s.call("TOTAL_SHARES_BPS") == 10_000
    factory = w3.eth.contract(abi=s.abi, bytecode=load_artifact()["bytecode"])
    for admin, approver in ((accts.admin, "0x" + "00" * 20), ("0x" + "00" * 20, accts.approver)):
        with pytest.raises((ContractCustomError, TransactionFailed)) as excinfo:
            factory.constructor(admin, approver).transact({"from": accts.admin})
        assert decode_revert(s.abi, excinfo.value).name == "ZeroAddress"


def test_deployed_code_is_the_committed_runtime_bytecode(solar: Solar) -> None:
    assert "0x" + solar.w3.eth.get_code(solar.c.address).hex().removeprefix("0x") == load_artifact()["deployedBytecode"]


# ------------------------------------------------------------------------------------------------ registerSystem


def test_register_system(solar: Solar, accts: Accounts) -> None:
    system_id, receipt = solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary)
    assert system_id == 1 and solar.call("systemCount") == 1
    (ev,) = solar.events(receipt, "SystemRegistered")
    assert ev["hub"] == accts.hub and ev["beneficiary"] == accts.beneficiary
    assert ev["mamChannelRoot"] == TRYTES_A and ev["holders"] == accts.holders and ev["sharesBps"] == SHARES
    assert (ev["pricePerKWh"], ev["totalValue"], ev["gracePeriod"]) == (PRICE, TOTAL, GRACE)
    info = solar.system(system_id)
    assert info["beneficiary"] == accts.beneficiary
    assert info["mamChannelRootHash"] == keccak(TRYTES_A.encode("ascii"))
    assert (info["holderCount"], info["gridShareBps"], info["lastPeriodId"]) == (3, 0, 0)
    assert info["registeredAt"] == solar.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert solar.call("holderList", system_id) == [accts.holders, SHARES]
    for i, (holder, share) in enumerate(zip(accts.holders, SHARES)):
        h = solar.holder(system_id, holder)
        assert (h["index"], h["shareBps"], h["status"], h["equityPaid"], h["debt"], h["prepaid"]) == (i, share, PAYING, 0, 0, 0)
        assert h["holdingValue"] == expected_holding(TOTAL, share) and h["inGoodStanding"]
    # the hub role is per system, administered by approvers
    assert solar.call("hubRole", system_id) == hub_role(system_id)
    assert solar.call("hasRole", hub_role(system_id), accts.hub)
    assert solar.call("getRoleAdmin", hub_role(system_id)) == APPROVER_ROLE
    granted = solar.events(receipt, "RoleGranted")
    assert [(g["role"], g["account"]) for g in granted] == [(hub_role(system_id), accts.hub)]
    second, _ = solar.register(accts.approver, [accts.h1], [10_000], hub=accts.spare, beneficiary=accts.beneficiary)
    assert second == 2 and not solar.call("hasRole", hub_role(2), accts.hub)


def test_register_system_holding_value_rounds_up(solar: Solar, accts: Accounts) -> None:
    system_id, _ = solar.register(
        accts.approver, accts.holders, [3333, 3333, 3334], hub=accts.hub, beneficiary=accts.beneficiary, total_value=1000
    )
    values = [solar.holder(system_id, h)["holdingValue"] for h in accts.holders]
    assert values == [334, 334, 334]  # 333.3 and 333.4 rounded up: the co-op is paid at least the total value


def test_register_system_64_holders_is_the_bound(chain: tuple[Web3, object], solar: Solar, accts: Accounts) -> None:
    holders = [Web3.to_checksum_address(keccak(text=f"holder{i}")[:20]) for i in range(65)]
    shares = [156] * 63 + [10_000 - 156 * 63]
    system_id, receipt = solar.register(accts.approver, holders[:64], shares, hub=accts.hub, beneficiary=accts.beneficiary)
    assert solar.call("holderList", system_id)[0] == holders[:64]
    r = solar.reverts("registerSystem", *register_args(accts, holders=holders, shares=shares + [0]), sender=accts.approver)
    assert (r.name, r.args) == ("InvalidHolderCount", (65,))


@pytest.mark.parametrize(
    "override, error, args",
    [
        ({"hub": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"beneficiary": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"price": 0}, "InvalidPrice", ()),
        ({"total": 0}, "InvalidTotalValue", ()),
        ({"channel": TRYTES_A[:80]}, "InvalidTrytes", ()),
        ({"channel": TRYTES_A + "9"}, "InvalidTrytes", ()),
        ({"channel": "a" + TRYTES_A[1:]}, "InvalidTrytes", ()),
        ({"channel": "8" + TRYTES_A[1:]}, "InvalidTrytes", ()),
        ({"channel": "@" + TRYTES_A[1:]}, "InvalidTrytes", ()),
        ({"channel": "[" + TRYTES_A[1:]}, "InvalidTrytes", ()),
        ({"holders": [], "shares": []}, "InvalidHolderCount", (0,)),
        ({"shares": [4000, 6000]}, "LengthMismatch", (3, 2)),
        ({"shares": [4000, 3500, 2499]}, "SharesDoNotSum", (9999,)),
        ({"shares": [4000, 3500, 2501]}, "SharesDoNotSum", (10001,)),
    ],
)
def test_register_system_reverts(solar: Solar, accts: Accounts, override: dict, error: str, args: tuple) -> None:
    r = solar.reverts("registerSystem", *register_args(accts, **override), sender=accts.approver)
    assert (r.name, r.args) == (error, args)


def test_register_system_holder_reverts(solar: Solar, accts: Accounts) -> None:
    zero = "0x" + "00" * 20
    r = solar.reverts("registerSystem", *register_args(accts, holders=[accts.h1, zero, accts.h3]), sender=accts.approver)
    assert r.name == "ZeroAddress"
    r = solar.reverts("registerSystem", *register_args(accts, shares=[10_000, 0, 0]), sender=accts.approver)
    assert (r.name, r.args) == ("ZeroShare", (accts.h2,))
    r = solar.reverts("registerSystem", *register_args(accts, holders=[accts.h1, accts.h2, accts.h1]), sender=accts.approver)
    assert (r.name, r.args) == ("DuplicateHolder", (accts.h1,))


def test_register_system_by_stranger_or_hub_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    for who in (accts.stranger, accts.hub, accts.admin):
        r = solar.reverts("registerSystem", *register_args(accts), sender=who)
        assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (who, APPROVER_ROLE))
    assert solar.call("systemCount") == 1


# ------------------------------------------------------------------------------------------------ roles


def test_approver_rotates_hub_and_strangers_cannot(solar: Solar, system: int, accts: Accounts) -> None:
    role = hub_role(system)
    r = solar.reverts("grantRole", role, accts.stranger, sender=accts.stranger)
    assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (accts.stranger, APPROVER_ROLE))
    solar.transact("grantRole", role, accts.spare, sender=accts.approver)
    solar.transact("revokeRole", role, accts.hub, sender=accts.approver)
    clock = PeriodClock(solar, system, accts.spare)
    clock.settle([0, 0, 0])
    old = PeriodClock(solar, system, accts.hub)
    old.next_id, old.cursor = clock.next_id, clock.cursor
    r = solar.reverts("settle", system, 2, old.cursor, old.cursor + 10, b"\x11" * 32, TRYTES_B, 1, 1, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (accts.hub, role))


def test_admin_manages_approvers_and_strangers_cannot(solar: Solar, accts: Accounts) -> None:
    r = solar.reverts("grantRole", APPROVER_ROLE, accts.stranger, sender=accts.stranger)
    assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (accts.stranger, b"\x00" * 32))
    r = solar.reverts("grantRole", APPROVER_ROLE, accts.stranger, sender=accts.approver)
    assert r.name == "AccessControlUnauthorizedAccount"
    solar.transact("grantRole", APPROVER_ROLE, accts.spare, sender=accts.admin)
    solar.register(accts.spare, [accts.h1], [10_000], hub=accts.hub, beneficiary=accts.beneficiary)


# ------------------------------------------------------------------------------------------------ settle


def test_settle_anchors_period_and_bills_holders(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    consumption, generation = [4000, 1234, 10], 9000
    root = keccak(b"root")
    receipt = clock.settle(consumption, generation=generation, root=root, count=4242)
    due = receipt["settledAt"] + GRACE
    (ev,) = solar.events(receipt, "PeriodSettled")
    assert (ev["systemId"], ev["periodId"], ev["readingsRoot"], ev["mamRoot"]) == (system, 1, root, TRYTES_B)
    assert (ev["readingCount"], ev["generationWh"], ev["dueTime"]) == (4242, generation, due)
    period = solar.period(system, 1)
    assert period["readingsRoot"] == root and period["mamRootHash"] == keccak(TRYTES_B.encode())
    assert (period["readingCount"], period["generationWh"], period["dueTime"]) == (4242, generation, due)
    assert (period["start"], period["end"], period["settledAt"]) == (ev["start"], ev["end"], receipt["settledAt"])
    bills = [expected_bill(c, generation, s, PRICE) for c, s in zip(consumption, SHARES)]
    assert bills[0] == 3600 * PRICE // 1000  # 4000 Wh consumed, capped at 40 % of 9000 Wh
    (billed,) = solar.events(receipt, "Billed")
    assert billed["amounts"] == bills and billed["unpaid"] == bills
    for holder, bill in zip(accts.holders, bills):
        h = solar.holder(system, holder)
        assert (h["debt"], h["nextDueTime"], h["inGoodStanding"]) == (bill, due, True)
    info = solar.system(system)
    assert (info["lastPeriodId"], info["lastPeriodEnd"]) == (1, ev["end"])
    assert solar.balance() == 0


def test_settle_rounds_each_bill_down_after_multiplying(solar: Solar, accts: Accounts) -> None:
    # price 7 wei/kWh, 3333 bps: every step of the formula is fractional; one division at the end
    system, _ = solar.register(accts.approver, accts.holders, [3333, 3333, 3334], hub=accts.hub, beneficiary=accts.beneficiary, price=7)
    clock = PeriodClock(solar, system, accts.hub)
    consumption, generation = [999, 5000, 123457], 100_001
    receipt = clock.settle(consumption, generation=generation)
    (billed,) = solar.events(receipt, "Billed")
    assert billed["amounts"] == [expected_bill(c, generation, s, 7) for c, s in zip(consumption, [3333, 3333, 3334])]
    assert billed["amounts"] == [6, 35, 233]  # 6.993, 35, 233.3...: dividing first would give 0 for the first


def test_settle_pays_from_deposits_first(solar: Solar, system: int, accts: Accounts) -> None:
    bill = expected_bill(1000, 10_000, SHARES[0], PRICE)
    solar.transact("deposit", system, sender=accts.h1, value=bill * 3)
    solar.transact("deposit", system, sender=accts.h2, value=bill // 2)
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([1000, 1000, 0])
    (billed,) = solar.events(receipt, "Billed")
    assert billed["amounts"] == [bill, bill, 0] and billed["unpaid"] == [0, bill - bill // 2, 0]
    assert solar.events(receipt, "Credited") == [{"account": accts.beneficiary, "systemId": system, "amount": bill + bill // 2}]
    h1, h2 = solar.holder(system, accts.h1), solar.holder(system, accts.h2)
    assert (h1["prepaid"], h1["debt"], h1["nextDueTime"]) == (2 * bill, 0, 0)
    assert (h2["prepaid"], h2["debt"], h2["nextDueTime"]) == (0, bill - bill // 2, receipt["settledAt"] + GRACE)
    assert solar.withdrawable(accts.beneficiary) == bill + bill // 2
    assert solar.balance() == 2 * bill + solar.withdrawable(accts.beneficiary)


def test_settle_does_not_bill_owned_or_repossessed_shares(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    solar.transact("pay", system, sender=accts.h1, value=expected_holding(TOTAL, SHARES[0]))
    clock.settle([1000, 1000, 1000])
    solar.set_next_timestamp(solar.now() + GRACE + 1)
    solar.transact("repossess", system, accts.h2, sender=accts.stranger)
    receipt = clock.settle([1000, 1000, 1000])
    (billed,) = solar.events(receipt, "Billed")
    assert billed["amounts"] == [0, 0, expected_bill(1000, 10_000, SHARES[2], PRICE)]


def test_settle_retry_and_order(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([1, 2, 3])
    (ev,) = solar.events(receipt, "PeriodSettled")
    debts = [solar.holder(system, h)["debt"] for h in accts.holders]
    retry = (system, 1, ev["start"], ev["end"], b"\x11" * 32, TRYTES_B, 96, 10_000, [1, 2, 3])
    r = solar.reverts("settle", *retry, sender=accts.hub)
    assert (r.name, r.args) == ("PeriodAlreadySettled", (system, 1))
    assert [solar.holder(system, h)["debt"] for h in accts.holders] == debts
    end = ev["end"]
    # ids may skip (a period without readings is simply not settled) but never go back
    solar.transact("settle", system, 5, end, end + 1, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    r = solar.reverts("settle", system, 3, end + 1, end + 2, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodOutOfOrder", (3, 5))
    r = solar.reverts("settle", system, 6, end, end + 2, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodOverlap", (end, end + 1))
    assert solar.system(system)["lastPeriodId"] == 5


def later(solar: Solar, system: int, seconds: int = 1000) -> int:
    """Mine a block `seconds` after the system's registration (periods may not start before it); returns its time."""
    solar.set_next_timestamp(solar.system(system)["registeredAt"] + seconds)
    solar.w3.provider.ethereum_tester.mine_blocks()
    return solar.now()


def test_settle_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    now = later(solar, system)
    ok = dict(pid=1, start=now - 100, end=now - 10, root=b"\x11" * 32, mam=TRYTES_B, count=5, gen=100, cons=[1, 2, 3])

    def attempt(sender: str = accts.hub, system_id: int = system, **over: object) -> tuple[str, tuple]:
        a = dict(ok, **over)
        r = solar.reverts(
            "settle", system_id, a["pid"], a["start"], a["end"], a["root"], a["mam"], a["count"], a["gen"], a["cons"], sender=sender
        )
        return r.name, r.args

    role = hub_role(system)
    assert attempt(sender=accts.stranger) == ("AccessControlUnauthorizedAccount", (accts.stranger, role))
    assert attempt(sender=accts.h1) == ("AccessControlUnauthorizedAccount", (accts.h1, role))
    assert attempt(sender=accts.approver) == ("AccessControlUnauthorizedAccount", (accts.approver, role))
    assert attempt(pid=0) == ("PeriodOutOfOrder", (0, 0))
    assert attempt(start=now - 10) == ("InvalidPeriodRange", (now - 10, now - 10))
    assert attempt(start=now, end=now - 10) == ("InvalidPeriodRange", (now, now - 10))
    solar.set_next_timestamp(now + 5)
    assert attempt(end=now + 6) == ("PeriodNotEnded", (now + 6, now + 5))
    assert attempt(count=0) == ("EmptyPeriod", ())
    assert attempt(root=b"\x00" * 32) == ("EmptyPeriod", ())
    assert attempt(cons=[1, 2]) == ("LengthMismatch", (3, 2))
    assert attempt(cons=[1, 2, 3, 4]) == ("LengthMismatch", (3, 4))
    assert attempt(mam=TRYTES_B.swapcase()) == ("InvalidTrytes", ())
    assert attempt(mam=TRYTES_B[:-1]) == ("InvalidTrytes", ())
    # a hub of another system may not settle this one; a hub role for an unregistered id cannot even be granted
    other, _ = solar.register(accts.approver, [accts.h1], [10_000], hub=accts.spare, beneficiary=accts.beneficiary)
    assert attempt(sender=accts.spare) == ("AccessControlUnauthorizedAccount", (accts.spare, role))
    r = solar.reverts("grantRole", hub_role(99), accts.hub, sender=accts.admin)  # the admin of any undefined role
    assert (r.name, r.args) == ("UnknownRole", (hub_role(99),))
    r = solar.reverts("grantRole", hub_role(99), accts.hub, sender=accts.approver)
    assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (accts.approver, b"\x00" * 32))
    assert attempt(system_id=99) == ("AccessControlUnauthorizedAccount", (accts.hub, hub_role(99)))


def test_two_settlements_in_one_block_share_a_due_time(solar: Solar, system: int, accts: Accounts) -> None:
    """A contract hub settles two periods in one transaction: both bills share one due time and one ledger entry."""
    batcher_art = compile_contract("tests/contracts/HubBatcher.sol:HubBatcher")
    factory = solar.w3.eth.contract(abi=batcher_art["abi"], bytecode=batcher_art["bytecode"])
    receipt = solar.w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": accts.hub}))
    batcher = solar.w3.eth.contract(address=receipt["contractAddress"], abi=batcher_art["abi"])
    solar.transact("grantRole", hub_role(system), batcher.address, sender=accts.approver)
    now = later(solar, system)
    tx = batcher.functions.settleTwice(
        solar.c.address, system, [1, 2], [now - 200, now - 100], [now - 100, now - 50], b"\x11" * 32, TRYTES_B, 10_000, [1000, 0, 0]
    ).transact({"from": accts.hub})
    assert solar.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    assert solar.system(system)["lastPeriodId"] == 2
    bill = expected_bill(1000, 10_000, SHARES[0], PRICE)
    due = solar.period(system, 2)["dueTime"]
    assert solar.period(system, 1)["dueTime"] == due
    h = solar.holder(system, accts.h1)
    assert (h["debt"], h["nextDueTime"]) == (2 * bill, due)
    solar.transact("pay", system, sender=accts.h1, value=2 * bill - 1)
    assert solar.holder(system, accts.h1)["nextDueTime"] == due
    solar.transact("pay", system, sender=accts.h1, value=1)
    assert solar.holder(system, accts.h1)["debt"] == 0


def test_settle_gas_does_not_depend_on_reading_count(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    clock.settle([0, 0, 0])  # warm the system's storage the same way for both measurements
    few = clock.settle([0, 0, 0], count=1)["gasUsed"]
    many = clock.settle([0, 0, 0], count=2**32 - 1)["gasUsed"]
    assert abs(many - few) <= 3 * 12  # only the calldata bytes of the number itself differ (3 more non-zero bytes)


# ------------------------------------------------------------------------------------------------ pay


def test_pay_clears_oldest_debt_first_then_equity_then_credit(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    r1 = clock.settle([1000, 0, 0])
    solar.set_next_timestamp(solar.now() + 3 * 86400)
    r2 = clock.settle([2000, 0, 0])
    b1, b2 = expected_bill(1000, 10_000, 4000, PRICE), expected_bill(2000, 10_000, 4000, PRICE)
    due1, due2 = r1["settledAt"] + GRACE, r2["settledAt"] + GRACE
    assert solar.holder(system, accts.h1)["nextDueTime"] == due1
    receipt = solar.transact("pay", system, sender=accts.h1, value=b1 - 1)
    assert solar.events(receipt, "Paid") == [{"systemId": system, "holder": accts.h1, "toDebt": b1 - 1, "toEquity": 0, "toCredit": 0}]
    h = solar.holder(system, accts.h1)
    assert (h["debt"], h["nextDueTime"]) == (b1 + b2 - (b1 - 1), due1)  # 1 wei of the oldest bill still open
    solar.transact("pay", system, sender=accts.h1, value=1)
    assert solar.holder(system, accts.h1)["nextDueTime"] == due2
    holding = expected_holding(TOTAL, 4000)
    receipt = solar.transact("pay", system, sender=accts.h1, value=b2 + 1000)
    assert solar.events(receipt, "Paid")[0] == {"systemId": system, "holder": accts.h1, "toDebt": b2, "toEquity": 1000, "toCredit": 0}
    h = solar.holder(system, accts.h1)
    assert (h["debt"], h["nextDueTime"], h["equityPaid"], h["status"]) == (0, 0, 1000, PAYING)
    # equity stays in escrow until the share is owned; bills went straight to the beneficiary
    assert solar.withdrawable(accts.beneficiary) == b1 + b2
    assert solar.balance() == b1 + b2 + 1000
    receipt = solar.transact("pay", system, sender=accts.h1, value=holding - 1000 + 77)
    assert solar.events(receipt, "Paid")[0]["toEquity"] == holding - 1000
    assert solar.events(receipt, "Paid")[0]["toCredit"] == 77
    assert solar.events(receipt, "ShareOwned") == [{"systemId": system, "holder": accts.h1, "shareBps": 4000, "holdingValue": holding}]
    h = solar.holder(system, accts.h1)
    assert (h["status"], h["equityPaid"], h["inGoodStanding"]) == (OWNED, holding, True)
    assert solar.withdrawable(accts.beneficiary) == b1 + b2 + holding
    assert solar.withdrawable(accts.h1) == 77
    assert solar.call("supplyStatus", system, accts.h1) == [0, 0, 0, True, True]
    # an owner's further payment is credited back, never lost
    solar.transact("pay", system, sender=accts.h1, value=5)
    assert solar.withdrawable(accts.h1) == 82
    assert solar.balance() == solar.withdrawable(accts.beneficiary) + 82


def test_pay_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    r = solar.reverts("pay", system, sender=accts.h1, value=0)
    assert r.name == "ZeroAmount"
    r = solar.reverts("pay", system, sender=accts.stranger, value=1)
    assert (r.name, r.args) == ("NotHolder", (system, accts.stranger))
    r = solar.reverts("pay", 42, sender=accts.h1, value=1)
    assert (r.name, r.args) == ("NotHolder", (42, accts.h1))


# ------------------------------------------------------------------------------------------------ deposit


def test_deposit_clears_debt_then_prepays(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    clock.settle([0, 500, 0])
    bill = expected_bill(500, 10_000, 3500, PRICE)
    receipt = solar.transact("deposit", system, sender=accts.h2, value=bill + 999)
    assert solar.events(receipt, "Deposited") == [{"systemId": system, "holder": accts.h2, "toDebt": bill, "toPrepaid": 999}]
    assert solar.events(receipt, "Credited") == [{"account": accts.beneficiary, "systemId": system, "amount": bill}]
    prepaid, debt, due, good, owned = solar.call("supplyStatus", system, accts.h2)
    assert (prepaid, debt, due, good, owned) == (999, 0, 0, True, False)
    receipt = solar.transact("deposit", system, sender=accts.h2, value=1)
    assert solar.events(receipt, "Credited") == []
    assert solar.holder(system, accts.h2)["prepaid"] == 1000


def test_deposit_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    assert solar.reverts("deposit", system, sender=accts.h1, value=0).name == "ZeroAmount"
    r = solar.reverts("deposit", system, sender=accts.stranger, value=1)
    assert (r.name, r.args) == ("NotHolder", (system, accts.stranger))
    solar.transact("pay", system, sender=accts.h1, value=expected_holding(TOTAL, 4000))
    r = solar.reverts("deposit", system, sender=accts.h1, value=1)
    assert (r.name, r.args) == ("HolderNotPaying", (system, accts.h1, OWNED))
    PeriodClock(solar, system, accts.hub).settle([0, 100, 0])
    solar.set_next_timestamp(solar.now() + GRACE + 1)
    solar.transact("repossess", system, accts.h2, sender=accts.stranger)
    r = solar.reverts("deposit", system, sender=accts.h2, value=1)
    assert (r.name, r.args) == ("HolderNotPaying", (system, accts.h2, REPOSSESSED))


def test_withdraw_deposit(solar: Solar, system: int, accts: Accounts) -> None:
    solar.transact("deposit", system, sender=accts.h3, value=10**16)
    before = solar.w3.eth.get_balance(accts.h3)
    receipt = solar.transact("withdrawDeposit", system, 4 * 10**15, sender=accts.h3)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert solar.w3.eth.get_balance(accts.h3) == before + 4 * 10**15 - fee
    assert solar.events(receipt, "DepositWithdrawn") == [{"systemId": system, "holder": accts.h3, "amount": 4 * 10**15}]
    assert solar.holder(system, accts.h3)["prepaid"] == 6 * 10**15 == solar.balance()
    r = solar.reverts("withdrawDeposit", system, 6 * 10**15 + 1, sender=accts.h3)
    assert (r.name, r.args) == ("InsufficientPrepaid", (6 * 10**15, 6 * 10**15 + 1))
    assert solar.reverts("withdrawDeposit", system, 0, sender=accts.h3).name == "ZeroAmount"
    r = solar.reverts("withdrawDeposit", system, 1, sender=accts.stranger)
    assert (r.name, r.args) == ("NotHolder", (system, accts.stranger))
    # the rest of a deposit stays withdrawable after the holder owns the share
    solar.transact("pay", system, sender=accts.h3, value=expected_holding(TOTAL, 2500))
    solar.transact("withdrawDeposit", system, 6 * 10**15, sender=accts.h3)
    assert solar.balance() == solar.withdrawable(accts.beneficiary)


# ------------------------------------------------------------------------------------------------ withdraw


def test_withdraw(solar: Solar, system: int, accts: Accounts) -> None:
    r = solar.reverts("withdraw", sender=accts.beneficiary)
    assert r.name == "NothingToWithdraw"
    solar.transact("pay", system, sender=accts.h1, value=expected_holding(TOTAL, 4000) + 123)
    owed = solar.withdrawable(accts.beneficiary)
    before = solar.w3.eth.get_balance(accts.beneficiary)
    receipt = solar.transact("withdraw", sender=accts.beneficiary)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert solar.w3.eth.get_balance(accts.beneficiary) == before + owed - fee
    assert solar.events(receipt, "Withdrawn") == [{"account": accts.beneficiary, "amount": owed}]
    assert solar.withdrawable(accts.beneficiary) == 0
    assert solar.reverts("withdraw", sender=accts.beneficiary).name == "NothingToWithdraw"
    solar.transact("withdraw", sender=accts.h1)
    assert solar.balance() == 0
    assert solar.reverts("withdraw", sender=accts.stranger).name == "NothingToWithdraw"


# ------------------------------------------------------------------------------------------------ grace, standing, repossess


def test_standing_turns_false_after_grace_and_repossess(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    solar.transact("pay", system, sender=accts.h2, value=5 * 10**16)  # equity 0.05 ether
    receipt = clock.settle([0, 2000, 0])
    bill = expected_bill(2000, 10_000, 3500, PRICE)
    due = receipt["settledAt"] + GRACE
    solar.set_next_timestamp(due)
    r = solar.reverts("repossess", system, accts.h2, sender=accts.stranger)
    assert (r.name, r.args) == ("HolderInGoodStanding", (system, accts.h2))  # due time itself is still in grace
    solar.set_next_timestamp(due + 1)
    solar.w3.provider.ethereum_tester.mine_blocks()
    assert not solar.call("isInGoodStanding", system, accts.h2)
    assert solar.call("isInGoodStanding", system, accts.h1)  # no bill
    assert solar.call("supplyStatus", system, accts.h2) == [0, bill, due, False, False]
    receipt = solar.transact("repossess", system, accts.h2, sender=accts.stranger)
    equity = 5 * 10**16
    assert solar.events(receipt, "Repossessed") == [
        {"systemId": system, "holder": accts.h2, "shareBps": 3500, "equityReturned": equity - bill, "debtRecovered": bill, "debtRemaining": 0,
         "feeCharged": 0}
    ]
    h = solar.holder(system, accts.h2)
    assert (h["status"], h["shareBps"], h["equityPaid"], h["debt"], h["inGoodStanding"]) == (REPOSSESSED, 0, 0, 0, False)
    assert solar.system(system)["gridShareBps"] == 3500
    assert solar.call("holderList", system)[1] == [4000, 0, 2500]
    assert solar.withdrawable(accts.h2) == equity - bill
    assert solar.withdrawable(accts.beneficiary) == bill
    assert solar.balance() == equity
    r = solar.reverts("repossess", system, accts.h2, sender=accts.stranger)
    assert (r.name, r.args) == ("HolderNotPaying", (system, accts.h2, REPOSSESSED))


def test_repossess_with_debt_beyond_equity_keeps_the_rest_on_record(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    clock.settle([0, 0, 2500])
    bill = expected_bill(2500, 10_000, 2500, PRICE)
    solar.transact("pay", system, sender=accts.h3, value=bill)  # clears the first bill, no equity
    solar.transact("pay", system, sender=accts.h3, value=1)  # 1 wei of equity
    receipt = clock.settle([0, 0, 2500])
    solar.set_next_timestamp(receipt["settledAt"] + GRACE + 1)
    receipt = solar.transact("repossess", system, accts.h3, sender=accts.h1)
    (ev,) = solar.events(receipt, "Repossessed")
    assert (ev["equityReturned"], ev["debtRecovered"], ev["debtRemaining"]) == (0, 1, bill - 1)
    assert solar.holder(system, accts.h3)["debt"] == bill - 1
    # the former holder can still settle the debt; anything beyond is credited back
    receipt = solar.transact("pay", system, sender=accts.h3, value=bill + 10)
    assert solar.events(receipt, "Paid")[0] == {"systemId": system, "holder": accts.h3, "toDebt": bill - 1, "toEquity": 0, "toCredit": 11}
    assert solar.withdrawable(accts.h3) == 11
    # the repossessed holder is not billed any more, the others still are
    receipt = clock.settle([100, 100, 100])
    assert solar.events(receipt, "Billed")[0]["amounts"][2] == 0


def test_repossess_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    r = solar.reverts("repossess", system, accts.stranger, sender=accts.h1)
    assert (r.name, r.args) == ("NotHolder", (system, accts.stranger))
    r = solar.reverts("repossess", system, accts.h1, sender=accts.stranger)
    assert (r.name, r.args) == ("HolderInGoodStanding", (system, accts.h1))
    solar.transact("pay", system, sender=accts.h1, value=expected_holding(TOTAL, 4000))
    r = solar.reverts("repossess", system, accts.h1, sender=accts.stranger)
    assert (r.name, r.args) == ("HolderNotPaying", (system, accts.h1, OWNED))


def test_paying_late_debt_restores_standing(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([0, 0, 800])
    solar.set_next_timestamp(receipt["settledAt"] + GRACE + 100)
    solar.w3.provider.ethereum_tester.mine_blocks()
    assert not solar.call("isInGoodStanding", system, accts.h3)
    solar.transact("deposit", system, sender=accts.h3, value=10**17)
    assert solar.call("isInGoodStanding", system, accts.h3)
    assert solar.reverts("repossess", system, accts.h3, sender=accts.stranger).name == "HolderInGoodStanding"


# ------------------------------------------------------------------------------------------------ views


def test_views_revert_for_unknown_things(solar: Solar, system: int, accts: Accounts) -> None:
    assert solar.call_reverts("systemInfo", 7).args == (7,)
    assert solar.call_reverts("holderList", 7).name == "UnknownSystem"
    assert solar.call_reverts("holderInfo", system, accts.stranger).name == "NotHolder"
    assert solar.call_reverts("supplyStatus", system, accts.stranger).name == "NotHolder"
    assert solar.call_reverts("isInGoodStanding", 7, accts.h1).name == "NotHolder"
    assert solar.call_reverts("periodInfo", system, 1).args == (system, 1)
    assert solar.call_reverts("verifyReading", system, 1, b"\x00" * 32, []).name == "PeriodNotSettled"


def test_verify_reading_with_python_tree(solar: Solar, system: int, accts: Accounts) -> None:
    digests = [keccak(text=f"reading {i}") for i in range(37)]
    tree = merkle.build_reading_tree(digests)
    PeriodClock(solar, system, accts.hub).settle([0, 0, 0], root=tree.root, count=len(digests))
    for i in (0, 1, 17, 36):
        proof = merkle.reading_proof(tree, i)
        assert solar.call("verifyReading", system, 1, digests[i], proof)
        assert not solar.call("verifyReading", system, 1, keccak(digests[i]), proof)
    # an inner node is not a leaf: the contract hashes the value itself (second-preimage protection), so
    # presenting node 1 with its sibling (node 2) - which would fold to the root as a raw leaf - fails
    assert merkle.process_proof(tree.tree[1], [tree.tree[2]]) == tree.root
    assert not solar.call("verifyReading", system, 1, tree.tree[1], [tree.tree[2]])
    # the proof is bound to its period
    assert solar.call_reverts("verifyReading", system, 2, digests[0], merkle.reading_proof(tree, 0)).name == "PeriodNotSettled"


# ------------------------------------------------------------------------------------------------ packing bounds


def test_prepaid_is_bounded_by_its_72_bits(solar: Solar, system: int, accts: Accounts) -> None:
    """A deposit that would take the prepaid balance past 2^72 - 1 wei (4722 ether) reverts, nothing lost."""
    ether = 10**18
    solar.transact("deposit", system, sender=accts.h1, value=4000 * ether)
    r = solar.reverts("deposit", system, sender=accts.h1, value=800 * ether)
    assert (r.name, r.args) == ("SafeCastOverflowedUintDowncast", (72, 4800 * ether))
    assert solar.holder(system, accts.h1)["prepaid"] == 4000 * ether == solar.balance()
    solar.transact("deposit", system, sender=accts.h1, value=2**72 - 1 - 4000 * ether)
    assert solar.holder(system, accts.h1)["prepaid"] == 2**72 - 1


def test_absurd_bills_revert_the_settlement_instead_of_wrapping(solar: Solar, accts: Accounts) -> None:
    """The debt ledger holds cumulative amounts below 2^88 wei; a settlement that would exceed it reverts."""
    price = 2**100
    system, _ = solar.register(accts.approver, [accts.h1], [10_000], hub=accts.hub, beneficiary=accts.beneficiary, price=price)
    clock = PeriodClock(solar, system, accts.hub)
    now = solar.now()
    bill = expected_bill(1000, 2_000_000, 10_000, price)
    solar.set_next_timestamp(now + 100)
    r = solar.reverts("settle", system, 1, clock.cursor, now + 50, b"\x11" * 32, TRYTES_B, 1, 2_000_000, [1000], sender=accts.hub)
    assert (r.name, r.args) == ("SafeCastOverflowedUintDowncast", (88, bill))
    assert solar.system(system)["lastPeriodId"] == 0
    clock.settle([0], generation=2_000_000)  # the hub is not stuck: corrected data settles the period
