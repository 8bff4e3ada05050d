"""The settlement of periods: readings -> Merkle tree and proofs -> `settle` on chain, once per period, in order.

Periods (docs/settlement.md):
- a period is a range [start, end) of community-clock seconds aligned on `period_s`; periods that have no reading
  are not periods at all (the contract refuses an empty settlement), so on-chain ids are consecutive: 1, 2, 3...
  for the periods that had readings;
- a period is *closed* when community time has passed `end + lateness_s` and every reading it will anchor is on
  the tangle (its MAM message attached): the root of the message carrying its first reading goes on chain;
- a *straggler* (a reading stored after the period of its timestamp was settled) is anchored in the next period
  that is settled, flagged late: its energy is billed then, once, and its proof says which period holds it.

Idempotency, the whole point of this module: every step is a database transaction that leaves the period in a
state from which the next run continues (see settlement.models): `prepared` (readings assigned, proofs stored),
`submitted` (the *signed* transaction stored before it is broadcast: a crash after sending re-finds it by hash and
never signs a second settlement), `settled`. Before acting on a pending period the chain is asked first
(`periodInfo`, `systemInfo.lastPeriodId`): a period the chain already holds with our root is marked settled; one
the chain skipped is abandoned and its readings released. Periods the chain holds that the database does not (a
database restored from an older backup) are adopted: their readings are found by time range and the tree is
rebuilt and compared with the on-chain root, so nothing is billed twice. The contract itself refuses a second
settlement of a period and any period out of order, so even a bug here cannot double-bill.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from eth_utils import to_checksum_address
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from energy_manager.reading import verify_reading
from mam_client.models import ATTACHED, OutboxMessage
from settlement.chain import ChainClient, ContractReverted, NoContract, StaleNonce
from settlement.clock import ChainClock
from settlement.merkle import build_reading_tree, reading_proof, to_hex
from settlement.models import (
    ABANDONED,
    PREPARED,
    SETTLED,
    SUBMITTED,
    ReadingProof,
    SettlementPeriod,
    SettlementState,
    utcnow,
)
from settlement.solar_property import PeriodInfo, SolarProperty
from settlement.system import SystemRef
from scb.db import load_json_value, save_json_value, transaction
from scb.errors import ChainRefused, ChainUnavailable, ConfigError, DataError, TransportError
from scb.loop import describe
from scb.retry import Backoff

log = logging.getLogger("settlement.job")

GENERATION = "generation"
CONSUMPTION = "consumption"
#: receipt wait inside one job run; a longer wait continues on the next run (the hash is stored)
RUN_RECEIPT_WAIT_S = 30.0


class PeriodConflict(ChainRefused):
    """The chain holds this period with another readings root than ours: a second hub settles this system, or the
    database is not the one that settled it. Never resolved automatically: recorded on the period row and in the
    job's state, shown by `scb status` and the heartbeat, and checked again only on the slow schedule."""

    def __init__(self, message: str, period_id: int, chain_root: str, our_root: str) -> None:
        super().__init__(message)
        self.period_id = period_id
        self.chain_root = chain_root
        self.our_root = our_root


class Clock(Protocol):
    """The part of settlement.clock.CommunityTime the job needs."""

    def now_ms(self) -> int | None: ...


@dataclass
class PlannedPeriod:
    """A closed period ready to prepare."""

    period_id: int
    start_s: int
    end_s: int
    reading_ids: list[int]


@dataclass
class RunReport:
    settled: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    waiting: str | None = None  # why nothing more was settled (for `scb settle --now`)
    #: what the job is waiting on when it is not the schedule: None, "chain" (unreachable: backing off),
    #: "refused" (a revert: slow schedule), "conflict" (PeriodConflict: slow schedule, a person decides),
    #: "blocked" (wrong data, e.g. a corrupt stored reading: not retried until the process restarts)
    trouble: str | None = None


def load_json_state(session: Session, key: str) -> dict | None:
    return load_json_value(session, SettlementState, key)


def save_json_state(session: Session, key: str, value: dict) -> None:
    save_json_value(session, SettlementState, key, value)


#: gas of writing a new storage slot (EIP-2929 cold SSTORE 0 -> non-zero: 22,100), reserved per holder in settle
NEW_SLOT_GAS = 22_100


class Settler:
    """Settles the periods of one system. `run()` is the scheduled job.

    What `run()` does with each kind of trouble (the error tree, scb/errors.py):
    - the chain unreachable (`TransportError`): exponential back-off, `retry_initial_s` doubling up to
      `retry_max_s`, persisted so that a restart does not hammer a dead node;
    - the chain refused (`ChainRefused`: a revert, or a `PeriodConflict`): recorded, tried again only on the slow
      schedule (`retry_max_s`); a conflict is never resolved automatically;
    - wrong data (`DataError`: a stored reading that fails its digest): settling stops until the process restarts
      (after an operator repaired the data); retrying cannot help;
    - a contract that vanished (`NoContract`) and everything else propagate: the service re-resolves the system,
      or the failure policy (scb.loop) decides.
    Database errors propagate too: the service's guard backs off in memory (the back-off cannot be saved while
    the database fails).
    """

    def __init__(self, factory: sessionmaker[Session], client: ChainClient, system: SystemRef, *, hub_id: str,
                 period_s: int, lateness_s: int, clock: Clock, chain_clock: ChainClock,
                 retry_initial_s: float = 5.0, retry_max_s: float = 300.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.factory = factory
        self.client = client
        self.system = system
        self.hub_id = hub_id
        self.period_s = period_s
        self.lateness_s = lateness_s
        self.clock = clock
        self.chain_clock = chain_clock
        self.chain = SolarProperty(client, system.contract, system.system_id)
        self.contract = self.chain.contract
        self.wall = wall
        self.backoff_key = f"settle-backoff:{system.ref}"
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        #: why settling stopped for good in this process (a DataError), or None
        self.blocked: str | None = None
        self.trouble: str | None = None
        with factory() as session:
            stored = load_json_state(session, self.backoff_key) or {}
        #: the stored state says "blocked" from before the restart: cleared by the first run that works
        self._stale_block = stored.get("kind") == "blocked"
        if not self._stale_block:  # a restart is the operator's "repaired": blocked is not restored
            self.backoff.failures = int(stored.get("failures", 0))
            self.backoff.not_before = float(stored.get("not_before", 0.0))
            self.backoff.last_error = str(stored.get("last_error", ""))
            self.trouble = stored.get("kind") if self.backoff.failures else None
        self._last_wait_reason: str | None = None
        #: gas used by the last settle transaction this process saw confirmed (None: none yet)
        self.last_settle_gas: int | None = None

    # -- the job ----------------------------------------------------------------------------------------------
    def run(self, force: bool = False) -> RunReport:
        """One scheduled run: skip while backing off or blocked (unless `force`), settle what is closed, record
        trouble (see the class docstring). With `force` (`scb settle --now`) trouble is recorded and raised."""
        report = RunReport()
        now = self.wall()
        if not force and self.blocked is not None:
            report.waiting, report.trouble = f"stopped until the hub restarts: {self.blocked}", "blocked"
            return report
        if not force and not self.backoff.due(now):
            report.waiting, report.trouble = f"backing off after: {self.backoff.last_error}", self.trouble
            return report
        try:
            self.settle_closed(report)
        except NoContract:
            raise  # the contract is gone (a reset development chain): the service resolves the system again
        except PeriodConflict as exc:
            # Two hubs settle this system, or this database is not the one that settled it: a person decides.
            # Recorded on the period row (by _finish), here and in the log; looked at again on the slow schedule.
            self._trouble(report, "conflict", exc, slow=True, level=logging.ERROR)
            if force:
                raise
            return report
        except ChainRefused as exc:  # a revert: the chain understood and said no; not retried soon
            self._trouble(report, "refused", exc, slow=True, level=logging.ERROR)
            if force:
                raise
            return report
        except TransportError as exc:  # the chain unreachable, a receipt not in yet: back off and try again
            self._trouble(report, "chain", exc, slow=False, level=logging.WARNING)
            if force:
                raise
            return report
        except DataError as exc:  # wrong and will stay wrong: stop settling until an operator repairs and restarts
            self.blocked = str(exc)
            log.error("settlement of system %d stopped until the hub restarts: %s", self.system.system_id, exc)
            self.trouble = report.trouble = "blocked"
            report.waiting = f"stopped until the hub restarts: {exc}"
            self.backoff.last_error = str(exc)
            self._save_backoff()
            if force:
                raise
            return report
        if self.backoff.failures or self._stale_block:
            log.info("settlement of system %d works again", self.system.system_id)
            self._stale_block = False
            self.backoff.succeed()
            self.trouble = None
            self._save_backoff()
        return report

    def _trouble(self, report: RunReport, kind: str, exc: BaseException, *, slow: bool, level: int) -> None:
        now = self.wall()
        delay = self.backoff.fail(now, str(exc))
        if slow:  # the slow end of the back-off at once: the same request would get the same answer
            delay = self.backoff.maximum
            self.backoff.not_before = now + delay
        log.log(level, "settlement of system %d: %s; next attempt in %.0f s", self.system.system_id,
                describe(exc) if kind == "chain" else exc, delay)
        self.trouble = report.trouble = kind
        report.waiting = str(exc)
        self._save_backoff()

    def _save_backoff(self) -> None:
        with transaction(self.factory) as session:
            save_json_state(session, self.backoff_key, {"failures": self.backoff.failures,
                                                        "not_before": self.backoff.not_before,
                                                        "last_error": self.backoff.last_error[:1000],
                                                        "kind": self.trouble})

    def settle_closed(self, report: RunReport) -> RunReport:
        """Finish pending periods, adopt periods only the chain knows, then prepare and settle closed ones."""
        while True:
            pending = self._pending_row()
            if pending is not None:
                outcome = self._finish(pending)
                if outcome == SETTLED:
                    report.settled.append(pending.period_id)
                    continue
                if outcome == ABANDONED:
                    report.abandoned.append(pending.period_id)
                    continue
                report.waiting = f"period {pending.period_id}: transaction {pending.tx_hash} not final yet"
                return report
            report.adopted.extend(self._adopt_chain_periods())
            plan, why = self.next_closed_period()
            if plan is None:
                report.waiting = why
                if why != self._last_wait_reason:
                    log.debug("settlement: %s", why)
                    self._last_wait_reason = why
                return report
            self._prepare(plan)

    # -- chain views ------------------------------------------------------------------------------------------
    def chain_last(self, view: SolarProperty | None = None) -> tuple[int, int]:
        """(lastPeriodId, lastPeriodEnd) of the system on chain (at `view`'s block, else the latest)."""
        info = (view or self.chain).system_info()
        return info.last_period_id, info.last_period_end

    def chain_period(self, period_id: int, view: SolarProperty | None = None) -> PeriodInfo | None:
        return (view or self.chain).period_info(period_id)

    def holder_order(self) -> list[tuple[str, str]]:
        """[(account, party)] in the contract's holder order."""
        accounts = [h.account for h in self.chain.holder_list()]
        party_of = self.system.party_of
        missing = [a for a in accounts if a.lower() not in party_of]
        if missing:  # holders are fixed at registration: the holder map of the configuration lacks them
            raise ConfigError(f"holder(s) {', '.join(missing)} of system {self.system.system_id} have no party in "
                              "[settlement.holders]; their consumption could not be billed")
        return [(to_checksum_address(a), party_of[a.lower()]) for a in accounts]

    # -- planning ---------------------------------------------------------------------------------------------
    def _pending_row(self) -> SettlementPeriod | None:
        with self.factory() as session:
            return session.scalars(
                select(SettlementPeriod).where(SettlementPeriod.system_ref == self.system.ref,
                                               SettlementPeriod.state.in_((PREPARED, SUBMITTED)))
                .order_by(SettlementPeriod.period_id).limit(1)).first()

    def _db_last(self, session: Session) -> tuple[int, int]:
        row = session.execute(
            select(func.max(SettlementPeriod.period_id), func.max(SettlementPeriod.end_s))
            .where(SettlementPeriod.system_ref == self.system.ref, SettlementPeriod.state != ABANDONED)).first()
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    def next_closed_period(self) -> tuple[PlannedPeriod | None, str]:
        """The next period to settle if it is closed, else (None, why not)."""
        now_ms = self.clock.now_ms()
        if now_ms is None:
            return None, "the community clock has not started (no energy manager run yet)"
        chain_id, chain_end = self.chain_last()
        with self.factory() as session:
            db_id, db_end = self._db_last(session)
            last_id, last_end = max(chain_id, db_id), max(chain_end, db_end)
            base = select(StoredReading).where(StoredReading.hub == self.hub_id, StoredReading.period.is_(None))
            oldest = session.scalars(base.where(StoredReading.ts_ms >= last_end * 1000)
                                     .order_by(StoredReading.ts_ms).limit(1)).first()
            if oldest is None:
                return None, "no reading after the last settled period"
            k = oldest.ts_ms // 1000 // self.period_s
            start = max(k * self.period_s, last_end)
            end = (k + 1) * self.period_s
            closes_ms = (end + self.lateness_s) * 1000
            if now_ms < closes_ms:
                return None, (f"period {last_id + 1} [{start}, {end}) closes at community time {closes_ms // 1000} "
                              f"(now {now_ms // 1000})")
            rows = session.execute(
                select(StoredReading.id, StoredReading.message_id, OutboxMessage.state)
                .outerjoin(OutboxMessage, OutboxMessage.id == StoredReading.message_id)
                .where(StoredReading.hub == self.hub_id, StoredReading.period.is_(None),
                       StoredReading.ts_ms < end * 1000)).all()
            unpublished = sum(1 for r in rows if r.message_id is None or r.state != ATTACHED)
            if unpublished:
                return None, (f"period {last_id + 1} [{start}, {end}) is closed but {unpublished} of its "
                              f"{len(rows)} readings are not on the tangle yet")
            return PlannedPeriod(last_id + 1, start, end, [r.id for r in rows]), "ready"

    # -- prepare ----------------------------------------------------------------------------------------------
    def _prepare(self, plan: PlannedPeriod) -> None:
        """One transaction: check every reading, build the tree, store proofs, assign readings, record the period."""
        holders = self.holder_order()
        with transaction(self.factory) as session:
            readings = session.scalars(select(StoredReading).where(StoredReading.id.in_(plan.reading_ids),
                                                                   StoredReading.period.is_(None))
                                       .order_by(StoredReading.id)).all()
            if len(readings) != len(plan.reading_ids):
                return  # another process prepared (some of) them meanwhile; the next run re-plans
            digests = []
            for r in readings:
                try:
                    verify_reading(r.canonical, r.digest)
                except DataError as exc:
                    raise DataError(f"stored reading {r.id} ({r.meter}#{r.seq}) is corrupt: {exc}; "
                                    f"period {plan.period_id} cannot be settled until it is repaired") from None
                digests.append(r.digest)
            tree = build_reading_tree(digests)
            generation = sum(r.delta_wh for r in readings if r.circuit == GENERATION)
            used: dict[str, int] = defaultdict(int)
            for r in readings:
                if r.circuit == CONSUMPTION:
                    used[r.party] += r.delta_wh
            consumption = [{"account": a, "party": p, "wh": used.get(p, 0)} for a, p in holders]
            first_message = min(r.message_id for r in readings if r.message_id is not None)
            message = session.get(OutboxMessage, first_message)
            assert message is not None and message.root
            period = SettlementPeriod(
                system_ref=self.system.ref, period_id=plan.period_id, start_s=plan.start_s, end_s=plan.end_s,
                readings_root=to_hex(tree.root), mam_root=message.root, reading_count=len(readings),
                late_count=sum(1 for r in readings if r.ts_ms < plan.start_s * 1000),
                generation_wh=generation, consumption_json=json.dumps(consumption), state=PREPARED)
            session.add(period)
            session.flush()
            for i, r in enumerate(readings):
                proof = reading_proof(tree, i)
                session.add(ReadingProof(reading_id=r.id, period_ref=period.id,
                                         proof=b"".join(proof),
                                         late=r.ts_ms < plan.start_s * 1000))
                r.period = plan.period_id
        log.info("period %d [%d, %d) prepared: %d readings (%d late), root %s, generation %d Wh, consumption %s",
                 plan.period_id, plan.start_s, plan.end_s, len(readings), period.late_count, period.readings_root,
                 generation, ", ".join(f"{c['party']} {c['wh']} Wh" for c in consumption))

    # -- submit and confirm -----------------------------------------------------------------------------------
    def _settle_fn(self, row: SettlementPeriod):  # type: ignore[no-untyped-def]
        consumption = [int(c["wh"]) for c in json.loads(row.consumption_json)]
        return self.chain.settle_call(row.period_id, row.start_s, row.end_s, bytes.fromhex(row.readings_root[2:]),
                                      row.mam_root, row.reading_count, row.generation_wh, consumption)

    def _finish(self, row: SettlementPeriod) -> str:
        """Bring a prepared/submitted period to `settled` or `abandoned`; returns the state it is in afterwards.

        The chain is asked before anything is (re)sent: what it holds wins.
        """
        what = f"settle period {row.period_id}"
        if row.tx_hash:
            receipt = self.client.receipt(row.tx_hash)
            if receipt is not None and receipt["status"] == 1:
                try:  # our transaction is mined: wait for the confirmation depth before calling it settled
                    self.client.wait(row.tx_hash, what, timeout_s=RUN_RECEIPT_WAIT_S)
                except ChainUnavailable:
                    return SUBMITTED
        view = self.chain.snapshot()  # the period and the system's last period from the same block
        on_chain = self.chain_period(row.period_id, view)
        if on_chain is not None:
            root = on_chain.readings_root_hex
            if root != row.readings_root:
                message = (f"period {row.period_id} of system {self.system.system_id} is on chain with readings "
                           f"root {root}, but this hub prepared {row.readings_root}: another hub settles this "
                           "system, or this database is not the one that settled it; an operator must decide")
                self._record_error(row.id, message)
                raise PeriodConflict(message, row.period_id, root, row.readings_root)
            self._mark_settled(row, due_time=on_chain.due_time)
            return SETTLED
        last_id, last_end = self.chain_last(view)
        if last_id >= row.period_id or last_end > row.start_s:
            self._abandon(row, last_id)
            return ABANDONED
        if row.tx_hash:
            receipt = self.client.receipt(row.tx_hash)
            if receipt is None and (self.client.known(row.tx_hash) or row.raw_tx):
                try:
                    if not self.client.known(row.tx_hash) and row.raw_tx:
                        self.client.send(row.raw_tx)  # lost before reaching the node (crash, node restart)
                        log.info("period %d: re-broadcast transaction %s", row.period_id, row.tx_hash)
                    self.client.wait(row.tx_hash, what, self._settle_fn(row), timeout_s=RUN_RECEIPT_WAIT_S)
                    return self._finish(self._reload(row))
                except StaleNonce:
                    log.info("period %d: the nonce of %s is used by another transaction; signing again",
                             row.period_id, row.tx_hash)
                except ContractReverted as exc:
                    self._record_error(row.id, str(exc))
                    self._clear_tx(row)
                    raise
                except ChainUnavailable:
                    return SUBMITTED
            elif receipt is not None and receipt["status"] != 1:
                failure = self.client.explain_failure(receipt, what, self._settle_fn(row))
                log.error("period %d: transaction %s failed: %s", row.period_id, row.tx_hash, failure)
                self._record_error(row.id, str(failure))
            self._clear_tx(row)
            row = self._reload(row)
        return self._submit(row)

    def _submit(self, row: SettlementPeriod) -> str:
        now_ms = self.clock.now_ms()
        if now_ms is not None:
            self.chain_clock.before_transaction(now_ms // 1000)
        fn = self._settle_fn(row)
        try:
            # A bill's due time is the landing block's time + grace: estimated in one block, a holder's new debt
            # may extend their last ledger entry; landing a second later it needs a new storage slot (SSTORE
            # 20k). Reserve that for every holder so the transaction never runs out of gas.
            holders = len(json.loads(row.consumption_json))
            signed = self.client.sign(fn, f"settle period {row.period_id}", extra_gas=NEW_SLOT_GAS * holders)
        except ContractReverted as exc:
            self._record_error(row.id, str(exc))
            raise
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            if fresh.tx_hash is not None or fresh.state != PREPARED:
                return SUBMITTED  # another process signed first; ours is discarded unsent
            fresh.tx_hash, fresh.raw_tx, fresh.nonce = signed.tx_hash, signed.raw, signed.nonce
            fresh.state = SUBMITTED
            fresh.attempts += 1
        log.info("period %d: sending settle transaction %s (nonce %d)", row.period_id, signed.tx_hash, signed.nonce)
        self.client.send(signed)
        try:
            self.client.wait(signed.tx_hash, f"settle period {row.period_id}", fn, timeout_s=RUN_RECEIPT_WAIT_S)
        except ContractReverted as exc:
            self._record_error(row.id, str(exc))
            self._clear_tx(row)
            raise
        except ChainUnavailable:
            return SUBMITTED
        return self._finish(self._reload(row))

    # -- row updates ------------------------------------------------------------------------------------------
    def _reload(self, row: SettlementPeriod) -> SettlementPeriod:
        with self.factory() as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            return fresh

    def _record_error(self, row_id: int, message: str) -> None:
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row_id)
            if fresh is not None:
                fresh.last_error = message[:2000]

    def _clear_tx(self, row: SettlementPeriod) -> None:
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            fresh.tx_hash = fresh.raw_tx = None
            fresh.nonce = None
            fresh.state = PREPARED

    def _mark_settled(self, row: SettlementPeriod, due_time: int) -> None:
        block = None
        if row.tx_hash:
            receipt = self.client.receipt(row.tx_hash)
            if receipt is not None and receipt["status"] == 1:
                block = int(receipt["blockNumber"])
                self.last_settle_gas = int(receipt["gasUsed"])
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            fresh.state = SETTLED
            fresh.raw_tx = None
            fresh.block_number = block
            fresh.due_time = due_time
            fresh.settled_at = utcnow()
            fresh.last_error = None
        log.info("period %d settled on chain (transaction %s, bills due at %d)", row.period_id, row.tx_hash,
                 due_time)

    def _abandon(self, row: SettlementPeriod, chain_last: int) -> None:
        """The chain moved past this period without it: release its readings to the next period."""
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            proofs = session.scalars(select(ReadingProof).where(ReadingProof.period_ref == row.id)).all()
            reading_ids = [p.reading_id for p in proofs]
            for p in proofs:
                session.delete(p)
            session.flush()
            if reading_ids:
                session.execute(update(StoredReading).where(StoredReading.id.in_(reading_ids))
                                .values(period=None))
            fresh.state = ABANDONED
            fresh.raw_tx = None
            fresh.last_error = (f"the chain settled up to period {chain_last} without this one; its "
                                f"{len(reading_ids)} readings go to the next period")
        log.warning("period %d abandoned: the chain is at period %d; %d readings released", row.period_id,
                    chain_last, len(reading_ids))

    # -- adoption of periods only the chain knows -------------------------------------------------------------
    def _adopt_chain_periods(self) -> list[int]:
        """Periods settled on chain but unknown to this database (restored from an older backup)."""
        view = self.chain.snapshot()
        chain_id, _ = self.chain_last(view)
        with self.factory() as session:
            db_id, _ = self._db_last(session)
        adopted: list[int] = []
        for period_id in range(db_id + 1, chain_id + 1):
            info = self.chain_period(period_id, view)
            if info is None:
                continue  # a gap in ids (another hub's numbering); nothing to adopt
            self._adopt(period_id, info, view)
            adopted.append(period_id)
        return adopted

    def _adopt(self, period_id: int, info: PeriodInfo, view: SolarProperty) -> None:
        root, start, end, due = info.readings_root_hex, info.start, info.end, info.due_time
        event = self._settled_event(period_id, view)
        mam_root = event["mamRoot"] if event else ""
        with transaction(self.factory) as session:
            readings = session.scalars(select(StoredReading).where(
                StoredReading.hub == self.hub_id, StoredReading.period.is_(None),
                StoredReading.ts_ms >= start * 1000, StoredReading.ts_ms < end * 1000)
                .order_by(StoredReading.id)).all()
            tree = build_reading_tree([r.digest for r in readings]) if readings else None
            matches = tree is not None and to_hex(tree.root) == root
            row = SettlementPeriod(
                system_ref=self.system.ref, period_id=period_id, start_s=start, end_s=end, readings_root=root,
                mam_root=mam_root, reading_count=info.reading_count, generation_wh=info.generation_wh,
                consumption_json="[]", state=SETTLED, tx_hash=event["tx"] if event else None,
                block_number=event["block"] if event else None, due_time=due, settled_at=utcnow(),
                last_error=None if matches else (
                    "adopted from the chain: the stored readings of its time range do not rebuild its root; they "
                    "are marked as settled in it (never billed twice) but have no proofs"))
            session.add(row)
            session.flush()
            for i, r in enumerate(readings):
                r.period = period_id
                if matches and tree is not None:
                    session.add(ReadingProof(reading_id=r.id, period_ref=row.id, late=False,
                                             proof=b"".join(reading_proof(tree, i))))
        log.warning("period %d was settled on chain but unknown to this database: adopted (%s)", period_id,
                    "proofs rebuilt" if matches else "readings do not rebuild its root; no proofs")

    def _settled_event(self, period_id: int, view: SolarProperty) -> dict | None:
        events = view.period_settled_events(period_id)
        if not events:
            return None
        entry = events[-1]
        return {"mamRoot": entry.mam_root, "tx": entry.tx_hash, "block": entry.block_number}
