"""What the hub's status and alerts read about the settlement, from the database alone.

Two questions an operator must hear about before holders do:
- **Can the hub account still pay for settling?** The settlement service records, at start and after each run that
  settled a period, the account's balance, the gas one settlement takes and the gas price (`record_hub_account`,
  key `hub-account` of `settlement_state`); `hub_account_state` reads it back. Why recorded rather than asked when
  the status is shown: `scb status` works while the chain is down, and the balance only changes when the hub
  spends (or someone funds it).
- **Is a closed period waiting too long?** `oldest_unsettled_period` finds the oldest period whose lateness window
  is over but which is not settled, and the wall-clock time at which it closed (community time converted with the
  clock anchor the energy manager stores, scb.community_clock).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import EnergyState, StoredReading
from scb.community_clock import load_anchor
from scb.config import Config
from scb.db import load_json_value, save_json_value, transaction
from settlement.chain import ChainClient
from settlement.models import (
    SETTLED,
    SettlementPeriod,
    SettlementState,
    last_period,
    latest_system,
    pending_period,
    period_bounds,
)

log = logging.getLogger("settlement.health")

#: the key of the hub account's record in `settlement_state`
HUB_ACCOUNT_KEY = "hub-account"
#: Gas of one settlement when the hub has not settled one yet: the fixed part plus a new debt-ledger slot per
#: holder, rounded up from the measured worst case (docs/contract.md "Gas": 8 holders, debt, new ledger word:
#: 366,105). Why the worst case: the alert it feeds must fire early rather than late.
SETTLE_GAS_BASE = 160_000
SETTLE_GAS_PER_HOLDER = 30_000


def settle_gas_estimate(holders: int) -> int:
    return SETTLE_GAS_BASE + SETTLE_GAS_PER_HOLDER * max(1, holders)


def last_settle_gas(factory: sessionmaker[Session], client: ChainClient, system_ref: int) -> int | None:
    """Gas used by the newest settled period's transaction (from its receipt), if the chain still has it."""
    with factory() as session:
        tx = session.scalar(select(SettlementPeriod.tx_hash).where(
            SettlementPeriod.system_ref == system_ref, SettlementPeriod.state == SETTLED,
            SettlementPeriod.tx_hash.is_not(None)).order_by(SettlementPeriod.period_id.desc()).limit(1))
    if tx is None:
        return None
    receipt = client.receipt(tx)
    return int(receipt["gasUsed"]) if receipt is not None and receipt.get("status") == 1 else None


def record_hub_account(factory: sessionmaker[Session], client: ChainClient, *, holders: int,
                       settle_gas: int | None = None, wall: Callable[[], float] = time.time) -> dict[str, Any]:
    """Read the hub account's balance and the gas price from the chain and store them with the gas of one
    settlement: `settle_gas` (the last settlement's, from its receipt), else the one recorded before, else
    `settle_gas_estimate(holders)`. Returns what was stored. Raises what the client raises (ChainUnavailable)."""
    balance = client.balance(client.sender)
    price = client.gas_price()
    with transaction(factory) as session:
        previous = load_json_value(session, SettlementState, HUB_ACCOUNT_KEY) or {}
        if settle_gas is not None:
            gas, source = int(settle_gas), "receipt"
        elif previous.get("settle_gas_source") == "receipt" and isinstance(previous.get("settle_gas"), int):
            gas, source = previous["settle_gas"], "receipt"
        else:
            gas, source = settle_gas_estimate(holders), "estimate"
        # wei as decimal strings: balances exceed what JSON readers without big integers hold exactly
        value = {"account": client.sender, "balance_wei": str(balance), "settle_gas": gas,
                 "settle_gas_source": source, "gas_price_wei": str(price), "checked_at": float(wall())}
        save_json_value(session, SettlementState, HUB_ACCOUNT_KEY, value)
    log.debug("hub account %s: %d wei, %d gas per settlement (%s) at %d wei", client.sender, balance, gas, source,
              price)
    return value


def hub_account_state(session: Session) -> dict[str, Any] | None:
    """The hub account as last recorded: {"account", "balance_wei", "settle_gas", "settle_gas_source",
    "gas_price_wei", "checked_at"} with the wei amounts and gas as int and `checked_at` as wall-clock seconds
    (Unix time); None before the settlement service ever reached the chain (or if the record is unreadable)."""
    stored = load_json_value(session, SettlementState, HUB_ACCOUNT_KEY)
    if stored is None:
        return None
    try:
        return {"account": str(stored.get("account", "")), "balance_wei": int(stored["balance_wei"]),
                "settle_gas": int(stored["settle_gas"]), "settle_gas_source": str(stored.get("settle_gas_source", "")),
                "gas_price_wei": int(stored["gas_price_wei"]), "checked_at": float(stored["checked_at"])}
    except (KeyError, TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ overdue periods


@dataclass(frozen=True)
class UnsettledPeriod:
    """The oldest closed period that is not settled.

    `period_id` is None while no period row exists yet (its readings are not prepared: the chain was unreachable,
    or a reading is not on the tangle yet); `state` is then "unprepared", else the row's state.
    """

    period_id: int | None
    state: str
    start_s: int  # community-clock seconds, [start, end)
    end_s: int
    closed_community_s: int  # end + lateness: when the period closed, on the community clock
    closed_at: float  # the same instant on the wall clock (Unix seconds)


def oldest_unsettled_period(session: Session, *, hub_id: str, period_s: int, lateness_s: int, real_time: bool,
                            now: float | None = None) -> UnsettledPeriod | None:
    """The oldest period whose lateness window is over at wall time `now` (default: now) but which is not settled,
    or None (nothing closed waits, or the accelerated community clock never ran).

    The same rules as the settlement job (settlement.job): a prepared or submitted period is waiting; otherwise
    the next period is the one holding the oldest reading that no period holds yet, from the end of the last
    period on (a straggler, older than that, rides with the next period and does not make an old period overdue).
    `real_time`: the community clock is the wall clock (energy settings `clock_speed = 1` and no start).
    """
    now = time.time() if now is None else now
    if real_time:
        now_ms, to_wall = int(now * 1000), (lambda ms: ms / 1000)
    else:
        anchor = load_anchor(session, EnergyState)
        if anchor is None:
            return None
        now_ms, to_wall = anchor.community_at(int(now * 1000)), (lambda ms: anchor.wall_at(ms) / 1000)
    system = latest_system(session)
    found: tuple[int | None, str, int, int] | None = None
    last_end = 0
    if system is not None:
        pending = pending_period(session, system.id)
        if pending is not None:
            found = (pending.period_id, pending.state, pending.start_s, pending.end_s)
        _, last_end = last_period(session, system.id)
    if found is None:
        oldest = session.scalar(select(func.min(StoredReading.ts_ms)).where(
            StoredReading.hub == hub_id, StoredReading.period.is_(None), StoredReading.ts_ms >= last_end * 1000))
        if oldest is None:
            return None
        found = (None, "unprepared", *period_bounds(int(oldest), period_s, last_end))
    period_id, state, start, end = found
    closes_ms = (end + lateness_s) * 1000
    if closes_ms > now_ms:
        return None
    return UnsettledPeriod(period_id, state, start, end, end + lateness_s, to_wall(closes_ms))


def oldest_unsettled_for(config: Config, session: Session, now: float | None = None) -> UnsettledPeriod | None:
    """`oldest_unsettled_period` with the hub's configuration ([energy] and [settlement])."""
    from energy_manager.settings import load_energy_settings
    from settlement.settings import settlement_settings

    energy = load_energy_settings(config)
    st = settlement_settings(config)
    return oldest_unsettled_period(session, hub_id=energy.hub_id, period_s=st.period_s, lateness_s=st.lateness_s,
                                   real_time=energy.clock_speed == 1 and energy.start_ms is None, now=now)
