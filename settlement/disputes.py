"""Periods the approver cancelled (SolarProperty 2's dispute window), found and settled again by the hub.

While a period's bills are within grace, the approver may cancel the period on chain (`cancelPeriod`): its bills
are reversed and the period waits, under its own id and with its own start and end, for its corrected settlement.
This module is the hub's side of it, in two steps that the settlement job runs before settling new periods
(`settle_cancelled`, one call):

1. **find** (`find_cancelled`): the system's `PeriodCancelled` events since the last look (a block cursor kept in
   `settlement_state`), each checked against the period's current state on chain (`periodInfo.cancelled`, read at
   one block); a local period marked settled whose on-chain period is cancelled becomes `cancelled`.
2. **settle again** (`resettle`): each `cancelled` period is settled again with the figures its row holds now
   (`generation_wh`, `consumption_json`: an operator who corrects a period corrects its row; the readings, their
   Merkle root and their proofs stay as they were). Write-ahead like the job: the signed transaction is stored in
   the row before it is sent, so after a crash it is looked for (and re-broadcast) rather than signed twice.

Why a state of its own rather than "prepared" again: the job would find the cancelled period on chain and count it
as settled, or, since the chain's last period is past it, abandon it and release its readings. A period in state
`cancelled` is left alone by the job's planning and confirmation, and still holds its id (the job numbers new
periods after the highest id of the database and of the chain).

Errors are the client's: a node away is ChainUnavailable (retried by the job's back-off), a revert is
ContractReverted (recorded in the row's `last_error`, shown like the job's own).
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scb.db import transaction
from settlement.chain import ChainClient, ContractReverted
from settlement.models import SETTLED, SettlementPeriod, SettlementState, utcnow
from settlement.solar_property import SolarProperty

log = logging.getLogger(__name__)

#: a settled period the approver cancelled on chain: to be settled again (SettlementPeriod.state)
CANCELLED = "cancelled"
#: gas of a new storage slot, added per holder to the estimate: estimated in a block at time T, a bill due at
#: T + grace extends the holder's last ledger entry, while the transaction landing at T + 1 opens a new one (the same
#: margin as the settlement job's)
NEW_SLOT_GAS = 22_100


def _cursor_key(system_ref: int) -> str:
    return f"disputes.{system_ref}.next_block"


def _load_cursor(session: Session, system_ref: int) -> int:
    row = session.get(SettlementState, _cursor_key(system_ref))
    return int(json.loads(row.value_json)) if row is not None else 0


def _save_cursor(session: Session, system_ref: int, block: int) -> None:
    row = session.get(SettlementState, _cursor_key(system_ref))
    if row is None:
        session.add(SettlementState(key=_cursor_key(system_ref), value_json=json.dumps(block)))
    else:
        row.value_json = json.dumps(block)


def find_cancelled(factory: sessionmaker[Session], chain: SolarProperty, system_ref: int) -> list[int]:
    """Mark the local periods whose on-chain period the approver cancelled; returns their ids (oldest first).

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
            row.state = CANCELLED
            row.last_error = f"cancelled by the approver on chain (block {view.block}); to be settled again"
            marked.append(period_id)
            log.warning("period %d was cancelled by the approver: its bills were reversed; settling it again",
                        period_id)
        # the next look starts after this snapshot (a cancellation is final once settled again or re-checked)
        _save_cursor(session, system_ref, int(view.block or 0) + 1)
    return marked


def _cancelled_rows(factory: sessionmaker[Session], system_ref: int) -> list[SettlementPeriod]:
    with factory() as session:
        return list(session.scalars(select(SettlementPeriod).where(
            SettlementPeriod.system_ref == system_ref, SettlementPeriod.state == CANCELLED)
            .order_by(SettlementPeriod.period_id)))


def _mark_settled(factory: sessionmaker[Session], row_id: int, due_time: int, block: int | None,
                  block_hash: str | None = None) -> None:
    with transaction(factory) as session:
        row = session.get(SettlementPeriod, row_id)
        assert row is not None
        row.state = SETTLED
        row.due_time = due_time
        row.block_number = block
        if hasattr(row, "block_hash"):  # the job's reorg check compares it with the chain's block at that height
            row.block_hash = block_hash
        row.settled_at = utcnow()
        row.last_error = None


def _settle_fn(chain: SolarProperty, row: SettlementPeriod):  # type: ignore[no-untyped-def]
    consumption = [int(c["wh"]) for c in json.loads(row.consumption_json)]
    return chain.settle_call(row.period_id, row.start_s, row.end_s, bytes.fromhex(row.readings_root[2:]),
                             row.mam_root, row.reading_count, row.generation_wh, consumption)


def resettle(factory: sessionmaker[Session], client: ChainClient, chain: SolarProperty, system_ref: int) -> list[int]:
    """Settle every `cancelled` period again; returns the ids settled again (oldest first)."""
    done: list[int] = []
    for row in _cancelled_rows(factory, system_ref):
        what = f"settle period {row.period_id} again"
        fn = _settle_fn(chain, row)
        if row.tx_hash and (client.receipt(row.tx_hash) is not None or client.known(row.tx_hash)
                            or row.raw_tx):
            # sent before a crash (or a lost broadcast): look for it rather than signing a second one
            if not client.known(row.tx_hash) and row.raw_tx:
                client.send(row.raw_tx)
            try:
                client.wait(row.tx_hash, what, fn)
            except ContractReverted:
                pass  # e.g. settled again by another transaction meanwhile: the chain decides below
        info = chain.snapshot().period_info(row.period_id)
        if info is not None and not info.cancelled:
            if info.readings_root_hex != row.readings_root:
                log.error("period %d was settled again on chain with readings root %s, not this hub's %s",
                          row.period_id, info.readings_root_hex, row.readings_root)
            receipt = client.receipt(row.tx_hash) if row.tx_hash else None
            _mark_settled(factory, row.id, info.due_time, int(receipt["blockNumber"]) if receipt else None,
                          _hex(receipt["blockHash"]) if receipt else None)
            done.append(row.period_id)
            continue
        try:
            signed = client.sign(fn, what, extra_gas=NEW_SLOT_GAS * len(json.loads(row.consumption_json)))
        except ContractReverted as exc:
            _record_error(factory, row.id, str(exc))
            raise
        with transaction(factory) as session:  # write-ahead: the transaction is known before it is sent
            stored = session.get(SettlementPeriod, row.id)
            assert stored is not None
            stored.tx_hash, stored.raw_tx, stored.nonce = signed.tx_hash, signed.raw, signed.nonce
            stored.attempts = (stored.attempts or 0) + 1
        log.info("period %d: sending its corrected settlement %s", row.period_id, signed.tx_hash)
        client.send(signed)
        receipt = client.wait(signed.tx_hash, what, fn)
        info = chain.snapshot().period_info(row.period_id)
        if info is None or info.cancelled:
            continue  # not final on this view yet: the next run looks again
        _mark_settled(factory, row.id, info.due_time, int(receipt["blockNumber"]), _hex(receipt["blockHash"]))
        log.info("period %d settled again (transaction %s, bills due at %d)", row.period_id, signed.tx_hash,
                 info.due_time)
        done.append(row.period_id)
    return done


def _hex(value: object) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()  # type: ignore[arg-type]


def _record_error(factory: sessionmaker[Session], row_id: int, message: str) -> None:
    with transaction(factory) as session:
        row = session.get(SettlementPeriod, row_id)
        if row is not None:
            row.last_error = message


def settle_cancelled(factory: sessionmaker[Session], client: ChainClient, chain: SolarProperty,
                     system_ref: int) -> list[int]:
    """Find the periods the approver cancelled and settle them again: the one call the settlement job makes
    (before it settles new periods). Returns the ids settled again."""
    find_cancelled(factory, chain, system_ref)
    return resettle(factory, client, chain, system_ref)
