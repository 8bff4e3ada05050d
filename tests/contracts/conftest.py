"""Fixtures for the SolarProperty tests: a fresh in-process chain per test, named accounts, a deployed contract."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from web3 import EthereumTesterProvider, Web3

from tests.contracts.solar import Solar, eth_tester_travel


@dataclass(frozen=True)
class Accounts:
    admin: str
    approver: str
    hub: str
    beneficiary: str
    h1: str
    h2: str
    h3: str
    stranger: str
    spare: str

    @property
    def holders(self) -> list[str]:
        return [self.h1, self.h2, self.h3]


SHARES = [4000, 3500, 2500]


@pytest.fixture
def chain() -> tuple[Web3, object]:
    provider = EthereumTesterProvider()
    return Web3(provider), provider.ethereum_tester


@pytest.fixture
def accts(chain: tuple[Web3, object]) -> Accounts:
    w3, _ = chain
    a = w3.eth.accounts
    return Accounts(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8])


@pytest.fixture
def solar(chain: tuple[Web3, object], accts: Accounts) -> Solar:
    w3, tester = chain
    return Solar.deploy(w3, accts.admin, accts.approver, eth_tester_travel(tester))


@pytest.fixture
def system(solar: Solar, accts: Accounts) -> int:
    """A registered system: price 1e15 wei/kWh, total value 1 ether, 7-day grace, three holders 40/35/25 %."""
    system_id, _ = solar.register(accts.approver, accts.holders, SHARES, hub=accts.hub, beneficiary=accts.beneficiary)
    return system_id
