"""Periods the approver cancelled (SolarProperty 2's dispute window), found so that the hub settles them again.

While a period's bills are within grace, the approver may cancel the period on chain (`cancelPeriod`): its bills
are reversed and the period waits, under its own id and with its own start and end, for its corrected settlement.
The settlement job calls `find_cancelled` at every run, before it finishes pending periods:

* it reads the system's `PeriodCancelled` events since the last look (a block cursor kept in `settlement_state`),
  each checked against the period's current state on chain (`periodInfo.cancelled`, read at one block);
* a local period marked settled whose on-chain period is cancelled is set back to **prepared**, with no transaction:
  the job then settles it with the figures its row holds now (`generation_wh`, `consumption_json`: an operator who
  corrects a period corrects its row; the readings, their Merkle root and their proofs stay as they were).

Why back to prepared and not a path of its own: the corrected settlement is a settlement like any other, and it
needs everything the job does for one on a public chain (write-ahead signing, fee caps, replacement of a stuck
transaction, confirmations and reorgs; docs/settlement.md). The job treats a cancelled period on chain as one still
to settle (settlement.job `_finish`), not as settled or as superseded. The first transaction stays in
`settlement_transactions`; the row forgets its nonce, so its old receipt is not taken for the new one.

Errors are the client's: a node away is ChainUnavailable (retried by the job's back-off).
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scb.db import load_json_value, save_json_value, transaction
from settlement.models import PREPARED, SETTLED, SettlementPeriod, SettlementState
from settlement.solar_property import SolarProperty

log = logging.getLogger(__name__)


def _cursor_key(system_ref: int) -> str:
    return f"disputes.{system_ref}.next_block"


def _load_cursor(session: Session, system_ref: int) -> int:
    """The first block the next look reads (0: from the contract's deployment block, as the client raises it)."""
    state = load_json_value(session, SettlementState, _cursor_key(system_ref)) or {}
    return int(state.get("next_block", 0))


def _save_cursor(session: Session, system_ref: int, block: int) -> None:
    # the same shape as the supply watch's event cursor (settlement.supply): {"next_block": n}
    save_json_value(session, SettlementState, _cursor_key(system_ref), {"next_block": int(block)})


def find_cancelled(factory: sessionmaker[Session], chain: SolarProperty, system_ref: int) -> list[int]:
    """Set the local periods whose on-chain period the approver cancelled back to prepared (to be settled again by
    the job); returns their ids (oldest first).

    Idempotent: an event seen twice, or one whose cancellation a reorg undid, changes nothing (each period is
    checked against its state on chain at one block before it is marked)."""
    if chain.version < 2:
        return []  # version 1 has no cancellation
    view = chain.snapshot()
    with factory() as session:
        start = _load_cursor(session, system_ref)
    if start > (view.block or 0):
        return []
    period_ids = sorted({e.period_id for e in view.period_cancelled_events(from_block=start)})
    marked: list[int] = []
    with transaction(factory) as session:
        for period_id in period_ids:
            row = session.scalars(select(SettlementPeriod).where(
                SettlementPeriod.system_ref == system_ref, SettlementPeriod.period_id == period_id,
                SettlementPeriod.state == SETTLED)).first()
            if row is None:
                continue  # not ours, already marked, or settled again since
            info = view.period_info(period_id)
            if info is None or not info.cancelled:
                continue  # settled again meanwhile (by this hub after a crash, or another one)
            row.state = PREPARED
            row.tx_hash = row.raw_tx = None
            row.nonce = None
            row.block_number = None
            row.block_hash = None
            row.settled_at = None
            row.last_error = f"cancelled by the approver on chain (block {view.block}); settled again"
            marked.append(period_id)
            log.warning("period %d was cancelled by the approver: its bills were reversed; settling it again",
                        period_id)
        # the next look starts after this snapshot (a cancellation is final once settled again or re-checked)
        _save_cursor(session, system_ref, int(view.block or 0) + 1)
    return marked
