"""A period the approver cancels is found (settlement.disputes) and settled again by the job, on a real anvil.

The demo hub's account is the contract's approver too (embedded default), so the test cancels with it, as an
approver would with `scb chain cancel-period`. Expected bills come from the issue's formula (tests/contracts/solar.py
expected_bill) and the stored figures, not from the code under test.
"""
from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from settlement.disputes import find_cancelled
from settlement.models import PREPARED, SETTLED, SettlementPeriod
from settlement.solar_property import SolarProperty
from tests.contracts.solar import expected_bill
from pathlib import Path

from settlement.cli import cmd_cancel_period
from tests.settlement.conftest import START_MS, Hub, make_hub, write_toml

HOUR_MS = 3600_000
MIDDAY_MS = START_MS + 11 * HOUR_MS  # community time 2030-01-01 11:00 UTC: the panels produce, the holders are billed


def _row(hub: Hub, period_id: int) -> SettlementPeriod:
    with hub.factory() as session:
        row = session.scalars(select(SettlementPeriod).where(SettlementPeriod.period_id == period_id)).one()
        session.expunge(row)
        return row


def test_a_cancelled_period_is_settled_again(tmp_path: Path, anvil) -> None:  # type: ignore[no-untyped-def]
    hub = make_hub(tmp_path, anvil.url, start_ms=MIDDAY_MS)
    hub.run_until(MIDDAY_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1, 2]
    chain = SolarProperty(hub.client, hub.system.contract, hub.system.system_id)
    ref = hub.system.ref
    assert find_cancelled(hub.factory, chain, ref) == []  # nothing cancelled: nothing to do

    first = _row(hub, 1)
    holders = chain.holders()
    debts = [h.debt_wei for h in holders]
    info = chain.system_info()
    shares = [h.share_bps for h in holders]
    consumption = [int(c["wh"]) for c in json.loads(first.consumption_json)]
    bills = [expected_bill(c, first.generation_wh, s, info.price_per_kwh_wei) for c, s in zip(consumption, shares)]
    assert any(bills)

    # the approver cancels with `scb chain cancel-period 1` (the demo's approver is the hub account)
    toml = write_toml(hub.config, tmp_path / "scb.toml")
    assert cmd_cancel_period(argparse.Namespace(config=str(toml), period_id=1, keystore=None, password_file=None)) == 0
    assert chain.period_info(1).cancelled  # type: ignore[union-attr]
    # no deposits in the demo: every bill was debt, and exactly that debt is forgiven
    assert [h.debt_wei for h in chain.holders()] == [d - b for d, b in zip(debts, bills)]

    assert find_cancelled(hub.factory, chain, ref) == [1]
    marked = _row(hub, 1)
    assert (marked.state, marked.tx_hash, marked.nonce) == (PREPARED, None, None) and _row(hub, 2).state == SETTLED
    assert find_cancelled(hub.factory, chain, ref) == []  # idempotent: the event was seen

    assert hub.settle().settled == [1]  # the job settles it again, as it settles any prepared period
    again = _row(hub, 1)
    on_chain = chain.period_info(1)
    assert on_chain is not None and not on_chain.cancelled
    assert (again.state, again.due_time) == (SETTLED, on_chain.due_time)
    assert again.tx_hash != first.tx_hash and on_chain.readings_root_hex == first.readings_root
    # the corrected bills get a grace period counted from their own settlement (the same second is possible)
    assert on_chain.due_time >= first.due_time
    assert [h.debt_wei for h in chain.holders()] == debts  # billed again with the same figures
    assert [e.amounts_wei for e in chain.billed_events(1)] == [tuple(bills), tuple(bills)]
    assert hub.settle().settled == [] and find_cancelled(hub.factory, chain, ref) == []

    # settlement goes on after the correction
    hub.run_until(MIDDAY_MS + 3 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [3]
