"""SolarProperty 2's additions, function by function: peak-power bounds, the dispute window (cancelPeriod and the
corrected settlement), assignShare, the repossession fee, the grid portion's energy, setBeneficiary, the grace
floor, bounded period-id steps, no period before registration, reclaimed ledgers. Success paths, every new custom
error, role checks by strangers. Expected amounts come from the issue's formulas (tests/contracts/solar.py).
"""
from __future__ import annotations

from typing import Any

from eth_utils import keccak

from tests.contracts.conftest import SHARES, Accounts
from tests.contracts.solar import MAX_HOLDER_PEAK_W, TRYTES_A, TRYTES_B, PeriodClock, Solar, expected_bill, expected_holding

PAYING, OWNED, REPOSSESSED = 1, 2, 3
PRICE = 10**15
TOTAL = 10**18
GRACE = 7 * 86400
APPROVER_ROLE = keccak(text="APPROVER_ROLE")


def later(solar: Solar, system: int, seconds: int = 1000) -> int:
    solar.set_next_timestamp(solar.system(system)["registeredAt"] + seconds)
    solar.w3.provider.ethereum_tester.mine_blocks()
    return solar.now()


def billed(solar: Solar, receipt: dict[str, Any]) -> tuple[list[int], list[int]]:
    (ev,) = solar.events(receipt, "Billed")
    return ev["amounts"], ev["unpaid"]


# ------------------------------------------------------------------------------------------------ registration


def test_version_and_constants(solar: Solar) -> None:
    assert solar.call("VERSION") == 2
    assert solar.call("MIN_GRACE_PERIOD") == 3600 and solar.call("MAX_PERIOD_ID_STEP") == 1000
    assert solar.call("MAX_HOLDER_PEAK_W") == 2**20 - 1 and solar.call("MAX_DEBT_ENTRIES") == 2**16 - 1


def test_register_records_peaks_and_fee(solar: Solar, accts: Accounts) -> None:
    system, receipt = solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary,
                                     peak=6000, holder_peaks=[5000, 4000, 1], fee_bps=250)
    (ev,) = solar.events(receipt, "SystemRegistered")
    assert (ev["peakPowerW"], ev["holderPeaksW"], ev["repossessionFeeBps"]) == (6000, [5000, 4000, 1], 250)
    info = solar.system(system)
    assert (info["peakPowerW"], info["repossessionFeeBps"]) == (6000, 250)
    assert info["lastPeriodEnd"] == info["registeredAt"]  # no period may start before the registration
    assert [solar.holder(system, h)["peakPowerW"] for h in accts.holders] == [5000, 4000, 1]


def test_register_reverts_on_new_terms(solar: Solar, accts: Accounts) -> None:
    def attempt(grace: int = GRACE, peak: int = 6000, fee: int = 0, peaks: list[int] | None = None) -> tuple:
        terms = (accts.hub, accts.beneficiary, PRICE, TOTAL, grace, peak, fee)
        r = solar.reverts("registerSystem", terms, TRYTES_A, accts.holders, SHARES,
                          peaks if peaks is not None else [1000] * 3, sender=accts.approver)
        return r.name, r.args

    assert attempt(grace=3599) == ("GracePeriodTooShort", (3599, 3600))
    assert attempt(grace=0) == ("GracePeriodTooShort", (0, 3600))
    assert attempt(peak=0) == ("InvalidPeakPower", (0,))
    assert attempt(peaks=[1000, 0, 1000]) == ("InvalidPeakPower", (0,))
    assert attempt(peaks=[1000, 2**20, 1000]) == ("InvalidPeakPower", (2**20,))
    assert attempt(peaks=[1000, 1000]) == ("LengthMismatch", (3, 2))
    assert attempt(fee=10_001) == ("InvalidFee", (10_001,))
    solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary, grace=3600,
                   fee_bps=10_000)  # the bounds themselves are allowed


# ------------------------------------------------------------------------------------------------ settle bounds


def test_settle_refuses_figures_above_peak_power(solar: Solar, accts: Accounts) -> None:
    system, _ = solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary,
                               peak=6000, holder_peaks=[3600, 7200, 1000])
    now = later(solar, system, 4000)
    start, end = now - 3600, now  # one hour: the bound in Wh is the peak in W
    args = (system, 1, start, end, b"\x11" * 32, TRYTES_B, 5)
    r = solar.reverts("settle", *args, 6001, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("GenerationAbovePeak", (6001, 6000))
    r = solar.reverts("settle", *args, 6000, [3601, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("ConsumptionAbovePeak", (0, 3601, 3600))
    r = solar.reverts("settle", *args, 6000, [3600, 7201, 0], sender=accts.hub)
    assert (r.name, r.args) == ("ConsumptionAbovePeak", (1, 7201, 7200))
    receipt = solar.settle(system, 1, start, end, [3600, 7200, 1000], hub=accts.hub, generation=6000)
    assert billed(solar, receipt)[0] == [expected_bill(c, 6000, s, PRICE) for c, s in zip([3600, 7200, 1000], SHARES)]
    # the bound scales with the period's length: half an hour, half the energy
    solar.set_next_timestamp(end + 1800)
    r = solar.reverts("settle", system, 2, end, end + 1800, b"\x11" * 32, TRYTES_B, 5, 3001, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("GenerationAbovePeak", (3001, 3000))
    # an owner is not billed: their consumption is not bounded either
    owed = solar.holder(system, accts.h3)["debt"]
    solar.transact("pay", system, sender=accts.h3, value=owed + expected_holding(TOTAL, SHARES[2]))
    assert solar.holder(system, accts.h3)["status"] == OWNED
    solar.settle(system, 2, end, end + 1800, [0, 0, 10**6], hub=accts.hub, generation=3000)


def test_settle_period_rules(solar: Solar, system: int, accts: Accounts) -> None:
    registered = solar.system(system)["registeredAt"]
    now = later(solar, system, 5000)
    r = solar.reverts("settle", system, 1, registered - 1, now - 10, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodOverlap", (registered - 1, registered))
    r = solar.reverts("settle", system, 1001, registered, now - 10, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodIdJump", (1001, 0))
    r = solar.reverts("settle", system, 2**64 - 1, registered, now - 10, b"\x11" * 32, TRYTES_B, 1, 0, [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodIdJump", (2**64 - 1, 0))
    solar.settle(system, 1000, registered, now - 10, [0, 0, 0], hub=accts.hub)  # a step of 1000 is the bound
    assert solar.system(system)["lastPeriodId"] == 1000


def test_settle_reports_the_grid_portions_energy(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    (ev,) = solar.events(clock.settle([0, 0, 500], generation=9999), "PeriodSettled")
    assert ev["gridEnergyWh"] == 0
    solar.set_next_timestamp(solar.now() + GRACE + 1)
    solar.transact("repossess", system, accts.h3, sender=accts.stranger)
    (ev,) = solar.events(clock.settle([0, 0, 0], generation=9999), "PeriodSettled")
    assert ev["gridEnergyWh"] == 9999 * 2500 // 10_000  # floor(generation x grid share)


# ------------------------------------------------------------------------------------------------ cancelPeriod


def test_cancel_period_reverses_its_bills_exactly(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    b = [expected_bill(c, 10_000, s, PRICE) for c, s in zip([1000, 1000, 1000], SHARES)]
    solar.transact("deposit", system, sender=accts.h1, value=b[0] + 5)  # h1's bill is paid from the deposit
    solar.transact("deposit", system, sender=accts.h2, value=b[1] // 2)  # h2's half from the deposit
    first = clock.settle([1000, 1000, 1000])
    amounts, unpaid = billed(solar, first)
    assert amounts == b and unpaid == [0, b[1] - b[1] // 2, b[2]]
    solar.transact("pay", system, sender=accts.h3, value=b[2] // 3)  # h3 pays part of the bill since
    second = clock.settle([0, 0, 100])  # a later bill of h3 stays
    b3 = expected_bill(100, 10_000, SHARES[2], PRICE)
    beneficiary_before = solar.withdrawable(accts.beneficiary)
    balance = solar.balance()

    receipt = solar.transact("cancelPeriod", system, 1, amounts, unpaid, sender=accts.approver)
    # h3 owed b[2] - b[2] // 3 + b3 >= 0 and paid b[2] // 3 > b3: all it still owes is forgiven, the overpayment
    # against the remaining bill b3 comes back
    assert b[2] // 3 > b3
    forgiven = (b[1] - b[1] // 2) + (b[2] - b[2] // 3 + b3)
    refunded = b[0] + b[1] // 2 + (b[2] // 3 - b3)
    assert forgiven + refunded == sum(b)
    assert solar.events(receipt, "PeriodCancelled") == [
        {"systemId": system, "periodId": 1, "debtReversed": forgiven, "refunded": refunded}]
    ev = solar.events(receipt, "PeriodCancelled")[0]
    assert solar.events(receipt, "Debited") == [{"account": accts.beneficiary, "systemId": system, "amount": ev["refunded"]}]
    h1, h2, h3 = (solar.holder(system, h) for h in accts.holders)
    assert (h1["prepaid"], h1["debt"]) == (b[0] + 5, 0)  # the deposit that paid the bill is back
    assert (h2["prepaid"], h2["debt"]) == (b[1] // 2, 0)
    # h3: of b[2] + b3 billed, b[2] // 3 was paid; cancelling b[2] leaves b3 owed, and what h3 paid beyond it back
    owed_after = max(b3 - b[2] // 3, 0)
    assert h3["debt"] == owed_after
    assert h3["prepaid"] == (b[2] // 3 - b3 if b[2] // 3 > b3 else 0)
    assert h3["nextDueTime"] == (second["settledAt"] + GRACE if owed_after else 0)
    assert solar.withdrawable(accts.beneficiary) == beneficiary_before - ev["refunded"]
    assert solar.balance() == balance  # nothing left the contract; everything is still owed to someone
    period = solar.period(system, 1)
    assert period["cancelled"] and period["readingsRoot"] == b"\x11" * 32


def test_cancel_then_correct_the_period(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([4000, 0, 0], generation=9000)
    (ev,) = solar.events(receipt, "PeriodSettled")
    clock.settle([0, 0, 0])
    amounts, unpaid = billed(solar, receipt)
    solar.transact("cancelPeriod", system, 1, amounts, unpaid, sender=accts.approver)
    assert solar.holder(system, accts.h1)["debt"] == 0
    base = (system, 1)
    r = solar.reverts("settle", *base, ev["start"], ev["end"] + 1, b"\x22" * 32, TRYTES_B, 5, 9000, [100, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("CorrectionRangeMismatch", (ev["start"], ev["end"]))
    r = solar.reverts("cancelPeriod", system, 1, amounts, unpaid, sender=accts.approver)
    assert (r.name, r.args) == ("PeriodAlreadyCancelled", (system, 1))
    fixed = solar.settle(system, 1, ev["start"], ev["end"], [100, 0, 0], hub=accts.hub, generation=9000, root=b"\x22" * 32)
    bill = expected_bill(100, 9000, SHARES[0], PRICE)
    assert billed(solar, fixed)[0] == [bill, 0, 0]
    (again,) = solar.events(fixed, "PeriodSettled")
    settled_at = solar.w3.eth.get_block(fixed["blockNumber"])["timestamp"]
    assert (again["periodId"], again["dueTime"]) == (1, settled_at + GRACE)
    period = solar.period(system, 1)
    assert (period["cancelled"], period["readingsRoot"], period["settledAt"]) == (False, b"\x22" * 32, settled_at)
    assert solar.system(system)["lastPeriodId"] == 2  # a correction does not move the system's last period
    h1 = solar.holder(system, accts.h1)
    assert (h1["debt"], h1["nextDueTime"]) == (bill, settled_at + GRACE)
    r = solar.reverts("settle", *base, ev["start"], ev["end"], b"\x22" * 32, TRYTES_B, 5, 9000, [100, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("PeriodAlreadySettled", (system, 1))
    # the corrected period can be cancelled again, with its new bills
    solar.transact("cancelPeriod", system, 1, *billed(solar, fixed), sender=accts.approver)
    assert solar.holder(system, accts.h1)["debt"] == 0


def test_cancel_period_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([1000, 0, 0])
    amounts, unpaid = billed(solar, receipt)
    for who in (accts.stranger, accts.hub, accts.h1, accts.beneficiary):
        r = solar.reverts("cancelPeriod", system, 1, amounts, unpaid, sender=who)
        assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (who, APPROVER_ROLE))
    r = solar.reverts("cancelPeriod", system, 2, amounts, unpaid, sender=accts.approver)
    assert (r.name, r.args) == ("PeriodNotSettled", (system, 2))
    r = solar.reverts("cancelPeriod", system, 1, [amounts[0] + 1, *amounts[1:]], unpaid, sender=accts.approver)
    assert (r.name, r.args) == ("BillsMismatch", (system, 1))
    r = solar.reverts("cancelPeriod", system, 1, amounts, [0, 0, 0], sender=accts.approver)
    assert (r.name, r.args) == ("BillsMismatch", (system, 1))
    due = receipt["settledAt"] + GRACE
    solar.set_next_timestamp(due + 1)
    r = solar.reverts("cancelPeriod", system, 1, amounts, unpaid, sender=accts.approver)
    assert (r.name, r.args) == ("DisputeWindowClosed", (system, 1, due))


def test_cancel_period_needs_the_beneficiarys_balance(solar: Solar, system: int, accts: Accounts) -> None:
    """A bill paid from a deposit is refunded from the beneficiary's balance; once withdrawn it cannot be."""
    bill = expected_bill(1000, 10_000, SHARES[0], PRICE)
    solar.transact("deposit", system, sender=accts.h1, value=bill)
    receipt = PeriodClock(solar, system, accts.hub).settle([1000, 0, 0])
    solar.transact("withdraw", sender=accts.beneficiary)
    r = solar.reverts("cancelPeriod", system, 1, *billed(solar, receipt), sender=accts.approver)
    assert (r.name, r.args) == ("BeneficiaryCannotRefund", (0, bill))


def test_no_repossession_rests_on_a_cancelled_bill(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    receipt = clock.settle([0, 1000, 0])
    solar.set_next_timestamp(receipt["settledAt"] + GRACE)  # the last second of the dispute window
    solar.transact("cancelPeriod", system, 1, *billed(solar, receipt), sender=accts.approver)
    solar.set_next_timestamp(receipt["settledAt"] + GRACE + 100)
    r = solar.reverts("repossess", system, accts.h2, sender=accts.stranger)
    assert (r.name, r.args) == ("HolderInGoodStanding", (system, accts.h2))


# ------------------------------------------------------------------------------------------------ assignShare


def _repossess_h3(solar: Solar, system: int, accts: Accounts, clock: PeriodClock) -> None:
    clock.settle([0, 0, 100])
    solar.set_next_timestamp(solar.now() + GRACE + 1)
    solar.transact("repossess", system, accts.h3, sender=accts.stranger)


def test_assign_share_of_the_grid_portion(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    _repossess_h3(solar, system, accts, clock)
    assert solar.system(system)["gridShareBps"] == 2500
    receipt = solar.transact("assignShare", system, accts.spare, 1500, 3000, sender=accts.approver)
    assert solar.events(receipt, "ShareAssigned") == [
        {"systemId": system, "holder": accts.spare, "index": 3, "shareBps": 1500, "peakPowerW": 3000}]
    info = solar.system(system)
    assert (info["gridShareBps"], info["holderCount"]) == (1000, 4)
    assert solar.call("holderList", system) == [[*accts.holders, accts.spare], [4000, 3500, 0, 1500]]
    h = solar.holder(system, accts.spare)
    assert (h["index"], h["status"], h["shareBps"], h["holdingValue"], h["equityPaid"], h["debt"], h["peakPowerW"]) == (
        3, PAYING, 1500, expected_holding(TOTAL, 1500), 0, 0, 3000)
    # the new holder is billed like any holder from the next settlement (one more consumption entry) ...
    r = solar.reverts("settle", system, clock.next_id, clock.cursor, clock.cursor + 10, b"\x11" * 32, TRYTES_B, 1, 0,
                      [0, 0, 0], sender=accts.hub)
    assert (r.name, r.args) == ("LengthMismatch", (4, 3))
    receipt = clock.settle([0, 0, 0, 1000])
    assert billed(solar, receipt)[0] == [0, 0, 0, expected_bill(1000, 10_000, 1500, PRICE)]
    # ... and pays toward the share's value like any holder
    solar.transact("pay", system, sender=accts.spare, value=expected_holding(TOTAL, 1500) + 10**18)
    assert solar.holder(system, accts.spare)["status"] == OWNED


def test_assign_share_reverts(solar: Solar, system: int, accts: Accounts) -> None:
    clock = PeriodClock(solar, system, accts.hub)
    _repossess_h3(solar, system, accts, clock)
    zero = "0x" + "00" * 20
    for who in (accts.stranger, accts.hub, accts.beneficiary, accts.admin):
        r = solar.reverts("assignShare", system, accts.spare, 100, 1000, sender=who)
        assert (r.name, r.args) == ("AccessControlUnauthorizedAccount", (who, APPROVER_ROLE))
    cases = [
        ((system, accts.spare, 2501, 1000), ("InsufficientGridShare", (2500, 2501))),
        ((system, accts.spare, 0, 1000), ("ZeroShare", (accts.spare,))),
        ((system, zero, 100, 1000), ("ZeroAddress", ())),
        ((system, accts.spare, 100, 0), ("InvalidPeakPower", (0,))),
        ((system, accts.spare, 100, MAX_HOLDER_PEAK_W + 1), ("InvalidPeakPower", (MAX_HOLDER_PEAK_W + 1,))),
        ((system, accts.h3, 100, 1000), ("DuplicateHolder", (accts.h3,))),  # a former holder comes back anew
        ((system, accts.h1, 100, 1000), ("DuplicateHolder", (accts.h1,))),
        ((77, accts.spare, 100, 1000), ("UnknownSystem", (77,))),
    ]
    for args, want in cases:
        r = solar.reverts("assignShare", *args, sender=accts.approver)
        assert (r.name, r.args) == want, args


def test_assign_share_respects_the_holder_bound(solar: Solar, accts: Accounts) -> None:
    from web3 import Web3

    holders = [Web3.to_checksum_address(keccak(text=f"holder{i}")[:20]) for i in range(63)] + [accts.h1]
    shares = [156] * 63 + [10_000 - 156 * 63]
    system, _ = solar.register(accts.approver, holders, shares, hub=accts.hub, beneficiary=accts.beneficiary)
    clock = PeriodClock(solar, system, accts.hub)
    clock.settle([0] * 63 + [100])
    solar.set_next_timestamp(solar.now() + GRACE + 1)
    solar.transact("repossess", system, accts.h1, sender=accts.stranger)
    r = solar.reverts("assignShare", system, accts.spare, 100, 1000, sender=accts.approver)
    assert (r.name, r.args) == ("InvalidHolderCount", (65,))


# ------------------------------------------------------------------------------------------------ repossession fee


def test_repossession_fee_goes_to_the_beneficiary(solar: Solar, accts: Accounts) -> None:
    system, _ = solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary,
                               fee_bps=1000)
    clock = PeriodClock(solar, system, accts.hub)
    equity = 2 * 10**17
    solar.transact("pay", system, sender=accts.h1, value=equity)
    solar.transact("pay", system, sender=accts.h2, value=10**15)  # too little equity for the fee
    receipt = clock.settle([1000, 1000, 0])
    b1, b2 = (expected_bill(1000, 10_000, s, PRICE) for s in SHARES[:2])
    solar.set_next_timestamp(receipt["settledAt"] + GRACE + 1)
    fee = expected_holding(TOTAL, 4000) * 1000 // 10_000
    receipt = solar.transact("repossess", system, accts.h1, sender=accts.stranger)
    assert solar.events(receipt, "Repossessed")[0] == {
        "systemId": system, "holder": accts.h1, "shareBps": 4000, "equityReturned": equity - b1 - fee,
        "debtRecovered": b1, "debtRemaining": 0, "feeCharged": fee}
    assert solar.withdrawable(accts.h1) == equity - b1 - fee
    receipt = solar.transact("repossess", system, accts.h2, sender=accts.stranger)
    (ev,) = solar.events(receipt, "Repossessed")
    assert (ev["debtRecovered"], ev["feeCharged"], ev["equityReturned"]) == (b2, 10**15 - b2, 0)  # capped by equity
    assert solar.withdrawable(accts.beneficiary) == b1 + fee + 10**15
    assert solar.balance() == solar.withdrawable(accts.beneficiary) + solar.withdrawable(accts.h1)


# ------------------------------------------------------------------------------------------------ beneficiary


def test_set_beneficiary(solar: Solar, system: int, accts: Accounts) -> None:
    r = solar.reverts("setBeneficiary", system, accts.spare, sender=accts.stranger)
    assert (r.name, r.args) == ("NotBeneficiary", (system, accts.stranger))
    r = solar.reverts("setBeneficiary", system, accts.spare, sender=accts.hub)
    assert (r.name, r.args) == ("NotBeneficiary", (system, accts.hub))
    r = solar.reverts("setBeneficiary", system, "0x" + "00" * 20, sender=accts.beneficiary)
    assert r.name == "ZeroAddress"
    r = solar.reverts("setBeneficiary", 9, accts.spare, sender=accts.approver)
    assert (r.name, r.args) == ("UnknownSystem", (9,))
    bill = expected_bill(1000, 10_000, SHARES[0], PRICE)
    solar.transact("deposit", system, sender=accts.h1, value=3 * bill)
    clock = PeriodClock(solar, system, accts.hub)
    clock.settle([1000, 0, 0])
    receipt = solar.transact("setBeneficiary", system, accts.spare, sender=accts.beneficiary)
    assert solar.events(receipt, "BeneficiaryChanged") == [
        {"systemId": system, "previous": accts.beneficiary, "beneficiary": accts.spare}]
    assert solar.system(system)["beneficiary"] == accts.spare
    clock.settle([1000, 0, 0])
    assert (solar.withdrawable(accts.beneficiary), solar.withdrawable(accts.spare)) == (bill, bill)  # old stays old
    solar.transact("setBeneficiary", system, accts.stranger, sender=accts.approver)  # a lost key: the approver
    assert solar.system(system)["beneficiary"] == accts.stranger


# ------------------------------------------------------------------------------------------------ ledger reclaim


def test_a_paid_up_ledger_starts_again(solar: Solar, system: int, accts: Accounts) -> None:
    """Debt paid off in full reclaims the holder's ledger: the next bills' debt and due times are as if new."""
    clock = PeriodClock(solar, system, accts.hub)
    bills = []
    for _ in range(3):
        bills.append(clock.settle([500, 0, 0]))
    bill = expected_bill(500, 10_000, SHARES[0], PRICE)
    assert solar.holder(system, accts.h1)["debt"] == 3 * bill
    solar.transact("pay", system, sender=accts.h1, value=3 * bill)
    assert solar.holder(system, accts.h1)["debt"] == 0
    fresh = clock.settle([500, 0, 0])
    h = solar.holder(system, accts.h1)
    assert (h["debt"], h["nextDueTime"]) == (bill, fresh["settledAt"] + GRACE)
    solar.transact("pay", system, sender=accts.h1, value=bill - 1)
    assert solar.holder(system, accts.h1)["debt"] == 1
    second = clock.settle([500, 0, 0])
    solar.transact("pay", system, sender=accts.h1, value=1)
    h = solar.holder(system, accts.h1)
    assert (h["debt"], h["nextDueTime"]) == (bill, second["settledAt"] + GRACE)
