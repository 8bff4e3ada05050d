"""The demo households (settlement.households): the rules without a chain, the whole story on a real anvil, and
the refusal to act anywhere but on the embedded local development chain's demo system."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scb.config import Config
from scb.errors import ConfigError
from settlement.chain import ChainClient, dev_account
from settlement.households import (
    DEPOSIT_TARGET_WEI,
    INSTALMENT_BPS,
    REPOSSESS_AFTER_S,
    DemoHouseholds,
    check_demo,
    decide,
    role_of,
    run,
)
from settlement.settings import ethereum_settings
from settlement.solar_property import OWNED, PAYING, REPOSSESSED, HolderInfo, SolarProperty
from settlement.system import newest_system
from tests.settlement.conftest import Anvil, make_hub, start_anvil

#: 2030-06-21T10:00:00Z: a summer morning, so every period has generation and so bills
SUMMER_MS = 1_908_266_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
GRACE_S = 7200  # tests/settlement/conftest.py's demo grace period


def holder(**changes: object) -> HolderInfo:
    values: dict[str, object] = dict(account=dev_account(1).address, index=0, share_bps=2500, status=PAYING,
                                     holding_value_wei=25 * 10**16, equity_paid_wei=0, debt_wei=0, prepaid_wei=0,
                                     in_good_standing=True, next_due_time=0)
    values.update(changes)
    return HolderInfo(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ the rules


def test_roles_repeat_in_holder_order() -> None:
    assert [role_of(i) for i in range(6)] == ["deposit", "prompt", "late", "never", "deposit", "prompt"]


def test_deposit_household_tops_up_below_half_its_target() -> None:
    action = decide("deposit", "h1", holder(prepaid_wei=DEPOSIT_TARGET_WEI // 2 - 1), 1000, GRACE_S)
    assert action is not None and action.kind == "deposit" and action.value_wei == DEPOSIT_TARGET_WEI // 2 + 1
    assert decide("deposit", "h1", holder(prepaid_wei=DEPOSIT_TARGET_WEI // 2), 1000, GRACE_S) is None


def test_prompt_payer_pays_the_bill_and_an_instalment() -> None:
    h = holder(debt_wei=12345, next_due_time=5000)
    action = decide("prompt", "h2", h, 1000, GRACE_S)
    assert action is not None and action.kind == "pay"
    assert action.value_wei == 12345 + 25 * 10**16 * INSTALMENT_BPS // 10_000
    # the last instalment is what is left of the holding, no more
    near = holder(debt_wei=10, next_due_time=5000, equity_paid_wei=25 * 10**16 - 7)
    assert decide("prompt", "h2", near, 1000, GRACE_S).value_wei == 17  # type: ignore[union-attr]
    assert decide("prompt", "h2", holder(), 1000, GRACE_S) is None


def test_late_payer_pays_after_half_the_grace_period_and_before_the_due_time() -> None:
    due = 100_000
    billed = due - GRACE_S
    h = holder(debt_wei=500, next_due_time=due, in_good_standing=True)
    assert decide("late", "h3", h, billed + GRACE_S // 2 - 1, GRACE_S) is None
    action = decide("late", "h3", h, billed + GRACE_S // 2, GRACE_S)
    assert action is not None and action.kind == "pay" and action.value_wei == 500
    assert decide("late", "h3", h, due, GRACE_S) is None  # never past its due time: it pays late, not too late


def test_never_payer_is_repossessed_after_it_fell_out_of_good_standing() -> None:
    due = 100_000
    h = holder(debt_wei=500, next_due_time=due, in_good_standing=False)
    assert decide("never", "h4", holder(), due + 10 * REPOSSESS_AFTER_S, GRACE_S) is None  # nothing owed
    assert decide("never", "h4", h, due + REPOSSESS_AFTER_S, GRACE_S) is None
    action = decide("never", "h4", h, due + REPOSSESS_AFTER_S + 1, GRACE_S)
    assert action is not None and action.kind == "repossess" and action.target == h.account


@pytest.mark.parametrize("status", [OWNED, REPOSSESSED])
def test_nobody_pays_for_a_share_they_own_or_lost(status: str) -> None:
    h = holder(status=status, debt_wei=500, next_due_time=1)
    assert all(decide(role, "h", h, 10**9, GRACE_S) is None for role in ("deposit", "prompt", "late", "never"))


# ------------------------------------------------------------------------------------------------ on anvil


@pytest.fixture(scope="module")
def chain() -> Anvil:
    node = start_anvil()
    yield node
    node.stop()


def test_the_demo_story_on_anvil(chain: Anvil, tmp_path: Path) -> None:
    """Four households over four periods: h1's deposit pays its bills, h2 pays each bill at once and its equity
    grows, h3 pays late within grace and stays in good standing, h4 never pays and is repossessed."""
    hub = make_hub(tmp_path, chain.url, SUMMER_MS, energy__households=["h1", "h2", "h3", "h4"])
    eth = ethereum_settings(hub.config)
    households = DemoHouseholds(hub.factory, lambda: ChainClient(eth), hub.clock)
    view = SolarProperty(hub.client, hub.system.contract, hub.system.system_id)

    def standing() -> dict[str, HolderInfo]:
        party_of = hub.system.party_of
        return {party_of[h.account.lower()]: h for h in view.holders()}

    hub.run_until(SUMMER_MS)
    households.step()
    assert [(a.party, a.kind) for a in households.done] == [("h1", "deposit")]
    assert standing()["h1"].prepaid_wei == DEPOSIT_TARGET_WEI

    hub.run_until(SUMMER_MS + HOUR_MS + 20 * MIN_MS)
    assert hub.settle().settled == [1]
    before = standing()
    assert all(before[p].debt_wei > 0 for p in ("h2", "h3", "h4")) and before["h1"].debt_wei == 0
    households.step()  # h2 pays at once; h3 waits; h4 never pays
    after = standing()
    assert after["h2"].debt_wei == 0 and after["h2"].equity_paid_wei > 0
    assert after["h3"].debt_wei == before["h3"].debt_wei and after["h4"].debt_wei == before["h4"].debt_wei

    hub.clock.value = SUMMER_MS + HOUR_MS + 20 * MIN_MS + GRACE_S * 1000 // 2 + MIN_MS  # half the grace later
    households.step()
    late = standing()["h3"]
    assert late.debt_wei == 0 and late.in_good_standing

    for period in (2, 3, 4):  # one period per settlement run (see tests/dashboard/conftest.py)
        hub.run_until(SUMMER_MS + period * HOUR_MS + 20 * MIN_MS)
        assert hub.settle().settled == [period]
        households.step()
    hub.clock.value = SUMMER_MS + 4 * HOUR_MS + 20 * MIN_MS + REPOSSESS_AFTER_S * 1000
    households.step()
    final = standing()
    assert final["h4"].status == REPOSSESSED and not final["h4"].in_good_standing
    assert final["h1"].debt_wei == 0 and 0 < final["h1"].prepaid_wei
    assert final["h2"].debt_wei == 0 and final["h2"].equity_paid_wei >= 4 * before["h2"].holding_value_wei \
        * INSTALMENT_BPS // 10_000
    assert final["h3"].in_good_standing and final["h3"].status == PAYING
    # the treasurer (account 9) repossessed: no household account did it
    assert [a.kind for a in households.done].count("repossess") == 1
    assert hub.client.balance(dev_account(9).address) < 10_000 * 10**18


def test_refused_on_a_chain_that_is_not_the_local_development_chain(tmp_path: Path) -> None:
    other = start_anvil(extra=["--chain-id", "11155111"])  # answers as anvil, but serves Sepolia's chain id
    try:
        chain = start_anvil()
        try:
            hub = make_hub(tmp_path, chain.url, SUMMER_MS)
            system = newest_system(hub.factory)
            assert system is not None and system.demo
            assert set(check_demo(hub.client, system)) == set(system.holders)  # the demo itself is fine
            client = ChainClient(ethereum_settings(Config(data={"ethereum": {"rpc_url": other.url}})))
            with pytest.raises(ConfigError, match="only on the embedded local development chain"):
                check_demo(client, system)
            households = DemoHouseholds(hub.factory, lambda: client, hub.clock)
            with pytest.raises(ConfigError):
                households.step()
            assert households.done == []
        finally:
            chain.stop()
    finally:
        other.stop()


def test_refused_for_a_system_that_is_not_the_demo(chain: Anvil, tmp_path: Path) -> None:
    from dataclasses import replace

    hub = make_hub(tmp_path, chain.url, SUMMER_MS)
    with pytest.raises(ConfigError, match="not registered by this hub as the demo"):
        check_demo(hub.client, replace(hub.system, demo=False))
    strangers = replace(hub.system, holders={"h1": "0x" + "11" * 20})
    with pytest.raises(ConfigError, match="not one of the development accounts"):
        check_demo(hub.client, strangers)


def test_the_process_refuses_an_external_rpc_url(tmp_path: Path) -> None:
    config = Config(data={"hub": {"data_dir": str(tmp_path)}, "ethereum": {"rpc_url": "https://rpc.example.org"}})
    with pytest.raises(ConfigError, match="only on the embedded local chain"):
        run(config, threading.Event())
