"""Money is conserved, and every balance is what the rules say, over randomised sequences of operations.

Hypothesis draws a system (price, total value, shares, repossession fee) and a sequence of settlements, payments,
deposits, deposit withdrawals, repossessions, withdrawals, waits, and SolarProperty 2's cancellations of settled
periods (their bills reversed), corrected settlements of cancelled periods and assignments of the grid portion to
new holders. Each step runs on the contract and on `Model`, a
deliberately naive re-statement of docs/contract.md (a plain list of bills per holder, paid oldest-first by a
loop; exact rationals for bills) that shares no structure with the contract's prefix-sum ledger. After every
step: the contract reverts exactly when the model says it must (with the same error), every holder's state and
every withdrawable balance equal the model's, and

    contract balance == sum(withdrawable) + sum(prepaid) + sum(equity of holders still paying)

to the wei.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from tests.contracts.solar import TRYTES_B, Solar, eth_tester_travel

PAYING, OWNED, REPOSSESSED = 1, 2, 3
GRACE = 3 * 86400
MAX_HOLDERS = 5  # 1..5 holders: odd and even counts exercise the two-holders-per-word packing
MAX_ASSIGNED = 3  # new holders the grid portion may be assigned to
MIN_PERIOD_S = 60  # 5000 Wh in a minute stays below the largest holder peak power (2^20 - 1 W) the test registers


@dataclass
class Holder:
    account: str
    share: int
    status: int = PAYING
    prepaid: int = 0
    equity: int = 0
    bills: list[list[int]] = field(default_factory=list)  # [unpaid amount, due time], oldest first

    @property
    def debt(self) -> int:
        return sum(b[0] for b in self.bills)

    @property
    def next_due(self) -> int:
        return next((due for unpaid, due in self.bills if unpaid > 0), 0)


class Model:
    """The rules of docs/contract.md, written the obvious way."""

    def __init__(self, price: int, total: int, holders: list[str], shares: list[int], beneficiary: str,
                 fee_bps: int = 0):
        self.price, self.total, self.beneficiary, self.fee_bps = price, total, beneficiary, fee_bps
        self.holders = [Holder(a, s) for a, s in zip(holders, shares)]
        self.credit: dict[str, int] = {beneficiary: 0, **{a: 0 for a in holders}}
        self.grid = 0
        #: period id -> {"amounts", "unpaid", "settled", "cancelled", "start", "end"}
        self.periods: dict[int, dict[str, Any]] = {}

    def holding(self, h: Holder) -> int:
        return math.ceil(Fraction(self.total * h.share, 10_000))

    def standing(self, h: Holder, now: int) -> bool:
        return h.status != REPOSSESSED and (h.debt == 0 or now <= h.next_due)

    def _clear(self, h: Holder, amount: int) -> int:
        cleared = 0
        for bill in h.bills:
            take = min(bill[0], amount - cleared)
            bill[0] -= take
            cleared += take
        h.bills = [b for b in h.bills if b[0] > 0]
        return cleared

    def settle(self, consumption: list[int], generation: int, now: int) -> tuple[list[int], list[int]]:
        amounts, unpaid = [0] * len(self.holders), [0] * len(self.holders)
        for i, (h, consumed) in enumerate(zip(self.holders, consumption)):
            if h.status != PAYING:
                continue
            wh = min(Fraction(consumed), Fraction(generation * h.share, 10_000))
            amount = math.floor(wh * self.price / 1000)
            covered = min(amount, h.prepaid)
            h.prepaid -= covered
            self.credit[self.beneficiary] += covered
            amounts[i], unpaid[i] = amount, amount - covered
            if amount > covered:
                h.bills.append([amount - covered, now + GRACE])
        return amounts, unpaid

    def cancel(self, period_id: int, now: int) -> str | None:
        """Reverse the period's bills: forgive what is still owed (oldest debt first), refund what was paid."""
        p = self.periods[period_id]
        if p["cancelled"]:
            return "PeriodAlreadyCancelled"
        if now > p["settled"] + GRACE:
            return "DisputeWindowClosed"
        plan = []
        for i, (amount, unpaid) in enumerate(zip(p["amounts"], p["unpaid"])):
            if amount:
                reduced = min(unpaid, self.holders[i].debt)
                plan.append((self.holders[i], reduced, amount - reduced))
        refunded = sum(refund for _, _, refund in plan)
        if self.credit[self.beneficiary] < refunded:
            return "BeneficiaryCannotRefund"
        for h, reduced, refund in plan:
            self._clear(h, reduced)
            if h.status == PAYING:
                h.prepaid += refund
            else:
                self.credit[h.account] += refund
        self.credit[self.beneficiary] -= refunded
        p["cancelled"] = True
        return None

    def assign(self, account: str, share: int) -> str | None:
        if share > self.grid:
            return "InsufficientGridShare"
        self.grid -= share
        self.holders.append(Holder(account, share))
        self.credit.setdefault(account, 0)
        return None

    def pay(self, h: Holder, value: int) -> str | None:
        if value == 0:
            return "ZeroAmount"
        to_debt = self._clear(h, value)
        self.credit[self.beneficiary] += to_debt
        rest = value - to_debt
        if h.status == PAYING:
            to_equity = min(rest, self.holding(h) - h.equity)
            h.equity += to_equity
            rest -= to_equity
            if h.equity == self.holding(h):
                h.status = OWNED
                self.credit[self.beneficiary] += h.equity
        self.credit[h.account] += rest
        return None

    def deposit(self, h: Holder, value: int) -> str | None:
        if value == 0:
            return "ZeroAmount"
        if h.status != PAYING:
            return "HolderNotPaying"
        to_debt = self._clear(h, value)
        self.credit[self.beneficiary] += to_debt
        h.prepaid += value - to_debt
        return None

    def withdraw_deposit(self, h: Holder, amount: int) -> str | None:
        if amount == 0:
            return "ZeroAmount"
        if amount > h.prepaid:
            return "InsufficientPrepaid"
        h.prepaid -= amount
        return None

    def repossess(self, h: Holder, now: int) -> str | None:
        if h.status != PAYING:
            return "HolderNotPaying"
        if self.standing(h, now):
            return "HolderInGoodStanding"
        recovered = self._clear(h, h.equity)
        fee = min(self.holding(h) * self.fee_bps // 10_000, h.equity - recovered)
        self.credit[self.beneficiary] += recovered + fee
        self.credit[h.account] += h.equity - recovered - fee
        h.equity = 0
        self.grid += h.share
        h.share = 0
        h.status = REPOSSESSED
        return None

    def withdraw(self, account: str) -> str | None:
        if self.credit[account] == 0:
            return "NothingToWithdraw"
        self.credit[account] = 0
        return None

    def liabilities(self) -> int:
        escrow = sum(h.equity for h in self.holders if h.status == PAYING)
        return sum(self.credit.values()) + sum(h.prepaid for h in self.holders) + escrow


# ------------------------------------------------------------------------------------------------ strategies


@st.composite
def shares(draw: Any) -> list[int]:
    n = draw(st.integers(1, MAX_HOLDERS))
    cuts = sorted(draw(st.lists(st.integers(1, 9_999), min_size=n - 1, max_size=n - 1, unique=True)))
    points = [0, *cuts, 10_000]
    return [b - a for a, b in zip(points, points[1:])]


amounts = st.one_of(st.integers(0, 2_000), st.integers(1, 10**9), st.integers(1, 2 * 10**18))
who = st.integers(0, MAX_HOLDERS - 1)  # taken modulo the drawn holder count
wait = st.integers(1, 2 * GRACE)
ALL = MAX_HOLDERS + MAX_ASSIGNED
operations = st.one_of(
    st.tuples(st.just("settle"), st.lists(st.integers(0, 5_000), min_size=ALL, max_size=ALL), st.integers(0, 12_000), wait),
    st.tuples(st.just("cancel"), st.integers(0, 10**6), st.just(0), wait),
    st.tuples(st.just("resettle"), st.lists(st.integers(0, 5_000), min_size=ALL, max_size=ALL), st.integers(0, 12_000), wait),
    st.tuples(st.just("assign"), st.integers(1, 10_000), st.just(0), wait),
    st.tuples(st.just("pay"), who, amounts, wait),
    st.tuples(st.just("deposit"), who, amounts, wait),
    st.tuples(st.just("withdrawDeposit"), who, st.floats(0, 1.2), wait),
    st.tuples(st.just("repossess"), who, st.just(0), wait),
    st.tuples(st.just("withdraw"), st.integers(0, MAX_HOLDERS), st.just(0), wait),
)


# ------------------------------------------------------------------------------------------------ the test


def check(solar: Solar, model: Model, system: int) -> None:
    for i, h in enumerate(model.holders):
        got = solar.holder(system, h.account)
        want = {"status": h.status, "shareBps": h.share, "equityPaid": h.equity if h.status != OWNED else model.holding(h),
                "debt": h.debt, "prepaid": h.prepaid, "nextDueTime": h.next_due, "index": i}
        assert {k: got[k] for k in want} == want, f"holder {i}"
    for account, amount in model.credit.items():
        assert solar.withdrawable(account) == amount, account
    assert solar.system(system)["gridShareBps"] == model.grid
    assert solar.balance() == model.liabilities()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    price=st.sampled_from([1, 7, 999_983, 10**15]),
    total=st.sampled_from([1, 999, 10**6 + 3, 10**18]),
    split=shares(),
    fee_bps=st.sampled_from([0, 250, 10_000]),
    ops=st.lists(operations, min_size=1, max_size=40),
)
def test_money_is_conserved_and_matches_the_rules(price: int, total: int, split: list[int], fee_bps: int,
                                                  ops: list[tuple]) -> None:
    run_sequence(price, total, split, fee_bps, ops)


short_wait = st.one_of(st.integers(1, GRACE // 8), st.just(GRACE + 1))
dispute_operations = st.one_of(
    st.tuples(st.just("settle"), st.lists(st.integers(0, 5_000), min_size=ALL, max_size=ALL), st.integers(0, 12_000), short_wait),
    st.tuples(st.just("cancel"), st.integers(0, 10**6), st.just(0), short_wait),
    st.tuples(st.just("resettle"), st.lists(st.integers(0, 5_000), min_size=ALL, max_size=ALL), st.integers(0, 12_000), short_wait),
    st.tuples(st.just("repossess"), who, st.just(0), short_wait),
    st.tuples(st.just("assign"), st.integers(1, 10_000), st.just(0), short_wait),
    st.tuples(st.just("pay"), who, amounts, short_wait),
    st.tuples(st.just("deposit"), who, amounts, short_wait),
    st.tuples(st.just("withdraw"), st.integers(0, MAX_HOLDERS), st.just(0), short_wait),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    price=st.sampled_from([7, 999_983, 10**15]),
    split=shares(),
    fee_bps=st.sampled_from([0, 250, 10_000]),
    ops=st.lists(dispute_operations, min_size=5, max_size=40),
)
def test_money_with_cancellations_assignments_and_fees(price: int, split: list[int], fee_bps: int,
                                                       ops: list[tuple]) -> None:
    """The same check, with waits mostly inside the dispute window (or just past grace) so that cancellations,
    corrected settlements, repossessions with fees and assignments of the grid portion happen often."""
    run_sequence(price, 10**6 + 3, split, fee_bps, ops)


def run_sequence(price: int, total: int, split: list[int], fee_bps: int, ops: list[tuple]) -> None:
    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    a = w3.eth.accounts
    admin, approver, hub, beneficiary, stranger = a[0], a[1], a[2], a[3], a[9]
    holders = list(a[4 : 4 + len(split)])
    spare = []  # accounts for the holders the grid portion is assigned to
    for i in range(MAX_ASSIGNED):
        account = provider.ethereum_tester.add_account("0x" + keccak(text=f"money test holder {i}").hex())
        w3.eth.send_transaction({"from": admin, "to": account, "value": 10**23})
        spare.append(Web3.to_checksum_address(account))
    solar = Solar.deploy(w3, admin, approver, eth_tester_travel(provider.ethereum_tester))
    system, _ = solar.register(approver, holders, split, hub=hub, beneficiary=beneficiary, price=price, total_value=total,
                               grace=GRACE, fee_bps=fee_bps)
    model = Model(price, total, holders, split, beneficiary, fee_bps)
    cursor, period = solar.now(), 0
    for op in ops:
        kind, arg1, arg2, dt = op
        n = len(model.holders)
        now = solar.now() + dt
        if kind == "settle":
            now = max(now, cursor + MIN_PERIOD_S + 1)  # the period [cursor, now - 1] is at least a minute long
        solar.set_next_timestamp(now)
        expected = result = None
        if kind == "settle":
            period += 1
            solar.settle(system, period, cursor, now - 1, arg1[:n], hub=hub, generation=arg2, mam_root=TRYTES_B)
            amounts, unpaid = model.settle(arg1[:n], arg2, now)
            model.periods[period] = {"amounts": amounts, "unpaid": unpaid, "settled": now, "cancelled": False,
                                     "start": cursor, "end": now - 1}
            cursor = now - 1
        elif kind == "cancel":
            if not model.periods:
                continue
            pid = sorted(model.periods)[arg1 % len(model.periods)]
            p = model.periods[pid]
            expected = model.cancel(pid, now)
            result = _run(solar, expected, "cancelPeriod", system, pid, p["amounts"], p["unpaid"], sender=approver)
        elif kind == "resettle":
            cancelled = [pid for pid, p in model.periods.items() if p["cancelled"]]
            if not cancelled:
                continue
            pid = cancelled[0]
            p = model.periods[pid]
            solar.settle(system, pid, p["start"], p["end"], arg1[:n], hub=hub, generation=arg2, mam_root=TRYTES_B)
            amounts, unpaid = model.settle(arg1[:n], arg2, now)
            p.update(amounts=amounts, unpaid=unpaid, settled=now, cancelled=False)
        elif kind == "assign":
            if len(model.holders) - len(split) >= MAX_ASSIGNED or model.grid == 0:
                continue
            account = spare[len(model.holders) - len(split)]
            share = 1 + (arg1 - 1) % model.grid
            expected = model.assign(account, share)
            result = _run(solar, expected, "assignShare", system, account, share, 2**20 - 1, sender=approver)
        elif kind == "withdraw":
            account = beneficiary if arg1 == MAX_HOLDERS else model.holders[arg1 % n].account
            owed = model.credit[account]
            expected = model.withdraw(account)
            before = w3.eth.get_balance(account)
            result = _run(solar, expected, "withdraw", sender=account)
            if expected is None:
                assert w3.eth.get_balance(account) == before + owed - result["gasUsed"] * result["effectiveGasPrice"]
        else:
            h = model.holders[arg1 % n]
            if kind == "pay":
                expected = model.pay(h, arg2)
                result = _run(solar, expected, "pay", system, sender=h.account, value=arg2)
            elif kind == "deposit":
                expected = model.deposit(h, arg2)
                result = _run(solar, expected, "deposit", system, sender=h.account, value=arg2)
            elif kind == "withdrawDeposit":
                amount = int(h.prepaid * arg2)
                expected = model.withdraw_deposit(h, amount)
                result = _run(solar, expected, "withdrawDeposit", system, amount, sender=h.account)
            else:
                expected = model.repossess(h, now)
                result = _run(solar, expected, "repossess", system, h.account, sender=stranger)
        event(f"{kind}: {'ok' if expected is None else expected}")  # --hypothesis-show-statistics
        check(solar, model, system)


def _run(solar: Solar, expected_error: str | None, fn: str, *args: Any, sender: str, value: int = 0) -> Any:
    """Run a transaction that must succeed (expected_error None) or revert with exactly that error."""
    if expected_error is None:
        return solar.transact(fn, *args, sender=sender, value=value)
    reverted = solar.reverts(fn, *args, sender=sender, value=value)
    assert reverted.name == expected_error, (fn, args, reverted)
    return None
