"""Money is conserved, and every balance is what the rules say, over randomised sequences of operations.

Hypothesis draws a system (price, total value, shares) and a sequence of settlements, payments, deposits,
deposit withdrawals, repossessions, withdrawals and waits. Each step runs on the contract and on `Model`, a
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

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3

from tests.contracts.solar import TRYTES_B, Solar, eth_tester_travel

PAYING, OWNED, REPOSSESSED = 1, 2, 3
GRACE = 3 * 86400
MAX_HOLDERS = 5  # 1..5 holders: odd and even counts exercise the two-holders-per-word packing


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

    def __init__(self, price: int, total: int, holders: list[str], shares: list[int], beneficiary: str):
        self.price, self.total, self.beneficiary = price, total, beneficiary
        self.holders = [Holder(a, s) for a, s in zip(holders, shares)]
        self.credit: dict[str, int] = {beneficiary: 0, **{a: 0 for a in holders}}
        self.grid = 0

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

    def settle(self, consumption: list[int], generation: int, now: int) -> None:
        for h, consumed in zip(self.holders, consumption):
            if h.status != PAYING:
                continue
            wh = min(Fraction(consumed), Fraction(generation * h.share, 10_000))
            amount = math.floor(wh * self.price / 1000)
            covered = min(amount, h.prepaid)
            h.prepaid -= covered
            self.credit[self.beneficiary] += covered
            if amount > covered:
                h.bills.append([amount - covered, now + GRACE])

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
        self.credit[self.beneficiary] += recovered
        self.credit[h.account] += h.equity - recovered
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
operations = st.one_of(
    st.tuples(st.just("settle"), st.lists(st.integers(0, 5_000), min_size=MAX_HOLDERS, max_size=MAX_HOLDERS), st.integers(0, 12_000), wait),
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
    ops=st.lists(operations, min_size=1, max_size=40),
)
def test_money_is_conserved_and_matches_the_rules(price: int, total: int, split: list[int], ops: list[tuple]) -> None:
    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    a = w3.eth.accounts
    admin, approver, hub, beneficiary, stranger = a[0], a[1], a[2], a[3], a[9]
    n = len(split)
    holders = a[4 : 4 + n]
    solar = Solar.deploy(w3, admin, approver, eth_tester_travel(provider.ethereum_tester))
    system, _ = solar.register(approver, holders, split, hub=hub, beneficiary=beneficiary, price=price, total_value=total, grace=GRACE)
    model = Model(price, total, holders, split, beneficiary)
    cursor, period = solar.now(), 0
    for op in ops:
        kind, arg1, arg2, dt = op
        now = solar.now() + dt
        if kind == "settle":
            now = max(now, cursor + 2)  # the period [cursor, now - 1] must not be empty
        solar.set_next_timestamp(now)
        if kind == "settle":
            period += 1
            solar.settle(system, period, cursor, now - 1, arg1[:n], hub=hub, generation=arg2, mam_root=TRYTES_B)
            model.settle(arg1[:n], arg2, now)
            cursor = now - 1
            expected = None
            result = None
        elif kind == "withdraw":
            account = beneficiary if arg1 == MAX_HOLDERS else holders[arg1 % n]
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
        check(solar, model, system)


def _run(solar: Solar, expected_error: str | None, fn: str, *args: Any, sender: str, value: int = 0) -> Any:
    """Run a transaction that must succeed (expected_error None) or revert with exactly that error."""
    if expected_error is None:
        return solar.transact(fn, *args, sender=sender, value=value)
    reverted = solar.reverts(fn, *args, sender=sender, value=value)
    assert reverted.name == expected_error, (fn, args, reverted)
    return None
