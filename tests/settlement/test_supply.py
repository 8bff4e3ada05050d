"""Supply decisions: the rules, the watcher against anvil (grace running out in community time, repossession),
and the serial relay actuator through a real pseudo-terminal pair."""
from __future__ import annotations

import os
import select as select_module
from pathlib import Path

import pytest
from sqlalchemy import select

from settlement.chain import dev_account
from settlement.clock import ChainClock
from settlement.models import GRID, SUPPLY, SupplyDecision
from settlement.supply import (
    OWNED,
    PAYING,
    REPOSSESSED,
    ActuatorError,
    LoggingActuator,
    SerialRelayActuator,
    Standing,
    SupplyWatcher,
    decide,
)
from tests.settlement.conftest import Anvil, Hub, make_hub
from tests.web3_reference import call_of, contract_of, web3_of

#: 2030-06-21T10:00:00Z: midsummer morning, so the panels produce and bills are not zero
SUMMER_MS = 1_908_266_400_000
HOUR_MS = 3600_000


def standing(**kw) -> Standing:  # type: ignore[no-untyped-def]
    base = dict(party="h1", account="0x" + "11" * 20, status=PAYING, prepaid=0, debt=0, next_due=0, good=True)
    return Standing(**{**base, **kw})


def test_decision_rules() -> None:
    assert decide(standing())[0] == SUPPLY
    assert decide(standing(debt=5, next_due=2_000_000_000))[0] == SUPPLY
    decision, reason = decide(standing(debt=5, next_due=2_000_000_000, good=False))
    assert decision == GRID and "5 wei unpaid" in reason and "2033-05-18" in reason
    assert decide(standing(status=OWNED, good=True))[0] == SUPPLY
    decision, reason = decide(standing(status=REPOSSESSED, good=False), "0xabc")
    assert decision == GRID and "repossessed in transaction 0xabc" in reason


class RecordingActuator:
    kind = "test"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken = False

    def apply(self, party: str, decision: str, reason: str) -> None:
        if self.broken:
            raise ActuatorError("relay board unplugged")
        self.calls.append((party, decision))

    def close(self) -> None:
        pass


def rows(hub: Hub) -> list[SupplyDecision]:
    with hub.factory() as session:
        return list(session.scalars(select(SupplyDecision).order_by(SupplyDecision.id)))


@pytest.fixture
def summer(tmp_path: Path, anvil: Anvil) -> Hub:
    return make_hub(tmp_path, anvil.url, SUMMER_MS)


def test_holders_paying_falling_behind_and_repossessed(summer: Hub) -> None:
    hub = summer
    w3 = web3_of(hub.client)
    c = contract_of(hub.client, hub.system.contract)
    h1, h2, h3 = (dev_account(i).address for i in (1, 2, 3))
    assert [hub.system.holders[p] for p in ("h1", "h2", "h3")] == [h1, h2, h3]
    c.functions.deposit(1).transact({"from": h1, "value": 10**17})  # h1 prepays
    actuator = RecordingActuator()
    watcher = SupplyWatcher(hub.factory, hub.client, hub.system, actuator, hub.clock, ChainClock(hub.client, True))

    hub.run_until(SUMMER_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    watcher.run()
    assert actuator.calls == [("h1", SUPPLY), ("h2", SUPPLY), ("h3", SUPPLY)]
    debts = {p: int(d.debt_wei) for p, d in ((r.party, r) for r in rows(hub))}
    assert debts["h1"] == 0 and debts["h2"] > 0 and debts["h3"] > 0  # the sun shone: real bills
    c.functions.pay(1).transact({"from": h2, "value": debts["h2"]})  # h2 pays its bill, h3 does not

    # community time passes the grace period (2 h) of period 1's bills; more periods are settled meanwhile
    hub.run_until(SUMMER_MS + 3 * HOUR_MS + 40 * 60_000)
    assert hub.settle().settled == [2, 3]
    changed = watcher.run()
    assert [(d.party, d.decision) for d in changed] == [("h3", GRID)]
    assert "unpaid past its due time" in changed[0].reason
    assert actuator.calls[-1] == ("h3", GRID)
    assert not c.functions.isInGoodStanding(1, h3).call()  # the chain agrees, in community time
    assert c.functions.isInGoodStanding(1, h2).call()
    assert watcher.run() == []  # nothing changed: nothing stored, nothing switched
    count = len(rows(hub))

    # anyone may now repossess h3's share; the hub reacts to the event
    receipt = hub.client.transact(call_of(c, "repossess", 1, h3), "repossess")
    changed = watcher.run()
    assert [(d.party, d.decision, d.status) for d in changed] == [("h3", GRID, REPOSSESSED)]
    assert "0x" + bytes(receipt["transactionHash"]).hex() in changed[0].reason
    assert len(rows(hub)) == count + 1
    # h3 paying now does not bring supply back: the share is gone
    c.functions.pay(1).transact({"from": h3, "value": 10**16})
    assert watcher.run() == []


def test_actuator_failure_is_stored_and_retried(summer: Hub) -> None:
    hub = summer
    actuator = RecordingActuator()
    actuator.broken = True
    watcher = SupplyWatcher(hub.factory, hub.client, hub.system, actuator, hub.clock, ChainClock(hub.client, True))
    assert len(watcher.run()) == 3
    assert all(not r.applied and "unplugged" in (r.apply_error or "") for r in rows(hub))
    actuator.broken = False
    assert [d.applied for d in watcher.run()] == [True, True, True]
    assert len(rows(hub)) == 3  # retried on the same rows
    assert watcher.reapply() == 3 and len(actuator.calls) == 6  # at start the last decisions are applied again


def test_serial_relay_writes_one_line_per_change() -> None:
    master, slave = os.openpty()
    try:
        import tty

        tty.setraw(slave)
        relay = SerialRelayActuator(os.ttyname(slave), 9600)
        relay.apply("h3", GRID, "out of good standing")
        relay.apply("h1", SUPPLY, "in good standing")
        received = b""
        while received.count(b"\n") < 2:
            ready, _, _ = select_module.select([master], [], [], 5)
            assert ready, f"relay wrote only {received!r}"
            received += os.read(master, 1024)
        assert received == b"RELAY h3 GRID\nRELAY h1 SUPPLY\n"
        relay.close()
    finally:
        os.close(master)
        os.close(slave)


def test_serial_relay_on_a_missing_port_raises_a_retryable_error(tmp_path: Path) -> None:
    relay = SerialRelayActuator(str(tmp_path / "ttyNOPE"))
    with pytest.raises(ActuatorError, match="cannot be opened"):
        relay.apply("h1", SUPPLY, "x")
    LoggingActuator().apply("h1", SUPPLY, "logged only")  # the default never fails
