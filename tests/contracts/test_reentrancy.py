"""A contract that re-enters SolarProperty from its receive() cannot take money twice.

The attacker (tests/contracts/ReentrancyAttacker.sol) is a real holder of a system; when it receives ether from
withdraw()/withdrawDeposit() it calls back into withdraw, withdrawDeposit or pay. Checks-effects-interactions
alone would already leave nothing to take; the reentrancy lock makes the re-entrant call revert outright.
"""
from __future__ import annotations

from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractCustomError

from tests.contracts.conftest import Accounts
from tests.contracts.solar import Solar, compile_contract, decode_revert, expected_holding

NONE, WITHDRAW, WITHDRAW_DEPOSIT, PAY = 0, 1, 2, 3
TOTAL = 10**18


@pytest.fixture(scope="module")
def attacker_artifact() -> dict[str, Any]:
    return compile_contract("tests/contracts/ReentrancyAttacker.sol:ReentrancyAttacker")


@pytest.fixture
def attack(solar: Solar, accts: Accounts, attacker_artifact: dict[str, Any]) -> tuple[Any, int, int]:
    """The attacker owns system 1 outright with 1 ether of overpayment credited, and is paying in system 2."""
    w3 = solar.w3
    factory = w3.eth.contract(abi=attacker_artifact["abi"], bytecode=attacker_artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(solar.c.address).transact({"from": accts.stranger}))
    attacker = w3.eth.contract(address=receipt["contractAddress"], abi=attacker_artifact["abi"])
    owned, _ = solar.register(accts.approver, [attacker.address], [10_000], hub=accts.hub, beneficiary=accts.beneficiary, total_value=TOTAL)
    paying, _ = solar.register(
        accts.approver, [attacker.address, accts.h1], [5000, 5000], hub=accts.hub, beneficiary=accts.beneficiary, total_value=TOTAL
    )
    _send(w3, attacker.functions.pay(owned), accts.stranger, value=TOTAL + 10**18)
    _send(w3, attacker.functions.deposit(paying), accts.stranger, value=3 * 10**17)
    assert solar.withdrawable(attacker.address) == 10**18
    return attacker, owned, paying


def _send(w3: Web3, fn: Any, sender: str, value: int = 0) -> dict[str, Any]:
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "value": value, "gas": 2_000_000}))
    assert receipt["status"] == 1
    return receipt


def _liabilities(solar: Solar, attacker: Any, paying: int, accts: Accounts) -> int:
    held = solar.holder(paying, attacker.address)
    return solar.withdrawable(attacker.address) + solar.withdrawable(accts.beneficiary) + held["prepaid"] + held["equityPaid"]


@pytest.mark.parametrize("mode", [WITHDRAW, WITHDRAW_DEPOSIT, PAY])
def test_reentry_during_withdraw_is_refused(solar: Solar, accts: Accounts, attack: tuple[Any, int, int], mode: int) -> None:
    attacker, _, paying = attack
    w3 = solar.w3
    before = solar.balance()
    _send(w3, attacker.functions.configure(mode, False, paying, 10**17), accts.stranger)
    _send(w3, attacker.functions.withdraw(), accts.stranger)
    assert attacker.functions.reentries().call() == 0
    assert attacker.functions.attempts().call() == 1
    err = decode_revert(solar.abi, _Raw(attacker.functions.lastError().call()))
    assert err.name == "ReentrancyGuardReentrantCall"
    # exactly one payout of exactly the credited amount
    assert w3.eth.get_balance(attacker.address) == 10**18 == attacker.functions.received().call()
    assert solar.withdrawable(attacker.address) == 0
    assert solar.holder(paying, attacker.address)["prepaid"] == 3 * 10**17
    assert solar.balance() == before - 10**18 == _liabilities(solar, attacker, paying, accts)


def test_reentry_during_withdraw_deposit_is_refused(solar: Solar, accts: Accounts, attack: tuple[Any, int, int]) -> None:
    attacker, _, paying = attack
    w3 = solar.w3
    _send(w3, attacker.functions.configure(WITHDRAW_DEPOSIT, False, paying, 10**17), accts.stranger)
    _send(w3, attacker.functions.withdrawDeposit(paying, 10**17), accts.stranger)
    assert attacker.functions.reentries().call() == 0
    assert decode_revert(solar.abi, _Raw(attacker.functions.lastError().call())).name == "ReentrancyGuardReentrantCall"
    assert solar.holder(paying, attacker.address)["prepaid"] == 2 * 10**17
    assert w3.eth.get_balance(attacker.address) == 10**17
    assert solar.balance() == _liabilities(solar, attacker, paying, accts)


def test_a_reverting_recipient_keeps_its_balance(solar: Solar, accts: Accounts, attack: tuple[Any, int, int]) -> None:
    """If the recipient reverts (here: by bubbling the refused re-entry), the withdrawal reverts as a whole."""
    attacker, _, paying = attack
    w3 = solar.w3
    _send(w3, attacker.functions.configure(WITHDRAW, True, paying, 0), accts.stranger)
    with pytest.raises((ContractCustomError, TransactionFailed)) as excinfo:
        attacker.functions.withdraw().call({"from": accts.stranger})
    assert decode_revert(solar.abi, excinfo.value).name == "TransferFailed"
    tx = attacker.functions.withdraw().transact({"from": accts.stranger, "gas": 2_000_000})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 0
    assert solar.withdrawable(attacker.address) == 10**18
    assert w3.eth.get_balance(attacker.address) == 0
    # a well-behaved retry gets the money once
    _send(w3, attacker.functions.configure(NONE, False, paying, 0), accts.stranger)
    _send(w3, attacker.functions.withdraw(), accts.stranger)
    assert w3.eth.get_balance(attacker.address) == 10**18
    assert solar.balance() == _liabilities(solar, attacker, paying, accts)


class _Raw(Exception):
    """Wrap revert bytes recorded by the attacker so decode_revert can read them."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.data = "0x" + data.hex()
