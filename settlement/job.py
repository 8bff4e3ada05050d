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

On a public chain (docs/settlement.md "Settling on a public chain"): every transaction signed for a period is kept
(settlement_transactions) and a receipt for any of them counts; one not mined within `replace_after_s` is replaced
(same nonce, fees +12.5 %, settlement.fees); a dropped one is sent again; a nonce taken by another transaction is
re-signed with the next; a period is settled once its receipt is `confirmations` deep on the canonical chain, a
reorg before that sends the transaction again, and a periodic root check after finality catches deeper ones.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from settlement.abi import to_checksum_address
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from energy_manager.reading import verify_reading
from mam_client.models import ATTACHED, OutboxMessage
from settlement.chain import ChainClient, ContractCall, ContractReverted, NoContract, SignedTx, StaleNonce, Underpriced
from settlement.clock import ChainClock
from settlement.disputes import find_cancelled
from settlement.fees import FeeAboveCap, Fees, bump
from settlement.merkle import build_reading_tree, reading_proof, to_hex
from settlement.models import (
    ABANDONED,
    PREPARED,
    SETTLED,
    SUBMITTED,
    ReadingProof,
    SettlementPeriod,
    SettlementState,
    SettlementTransaction,
    last_period,
    pending_period,
    period_bounds,
    utcnow,
)
from settlement.solar_property import PeriodInfo, SolarProperty
from settlement.system import SystemRef
from scb.db import load_json_value, save_json_value, transaction
from scb.errors import ChainRefused, ConfigError, DataError, TransportError
from scb.loop import describe
from scb.retry import Backoff
from scb.timefmt import as_utc

log = logging.getLogger("settlement.job")

GENERATION = "generation"
CONSUMPTION = "consumption"
#: receipt wait inside one job run; a longer wait continues on the next run (the hash is stored)
RUN_RECEIPT_WAIT_S = 30.0
#: settled periods whose root the periodic check compares with the chain: the newest ones. Why not all: a reorg
#: deeper than a hundred periods (days of blocks) does not happen on any chain a community would use, and each
#: period is one eth_call against a provider that counts them
ROOT_CHECK_PERIODS = 100


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
    #: "blocked" (wrong data, e.g. a corrupt stored reading: not retried until the process restarts), "fee-cap"
    #: (the chain asks more than [ethereum] max_fee_gwei: waiting, looked at again at every check)
    trouble: str | None = None


def load_json_state(session: Session, key: str) -> dict | None:
    return load_json_value(session, SettlementState, key)


def save_json_state(session: Session, key: str, value: dict) -> None:
    save_json_value(session, SettlementState, key, value)


#: why a settle transaction was signed (settlement_transactions.reason)
FIRST, REPLACEMENT, NEW_NONCE = "first", "replacement", "new nonce"


@dataclass(frozen=True)
class Attempt:
    """One signed settle transaction of a period (a row of settlement_transactions)."""

    tx_hash: str
    raw: str
    nonce: int
    gas: int
    fees: Fees | None  # None: signed before fees were recorded
    created_at: float  # wall-clock seconds


def _attempt_row(period_ref: int, signed: SignedTx, reason: str) -> SettlementTransaction:
    fees = signed.fees
    return SettlementTransaction(period_ref=period_ref, tx_hash=signed.tx_hash, raw_tx=signed.raw,
                                 nonce=signed.nonce, gas=signed.gas, reason=reason,
                                 max_fee_wei=str(fees.max_fee if fees else 0),
                                 tip_wei=None if fees is None or fees.tip is None else str(fees.tip),
                                 created_at=utcnow())


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
                 wall: Callable[[], float] = time.time, receipt_wait_s: float = RUN_RECEIPT_WAIT_S) -> None:
        self.factory = factory
        self.client = client
        self.system = system
        self.hub_id = hub_id
        self.period_s = period_s
        self.lateness_s = lateness_s
        self.clock = clock
        self.chain_clock = chain_clock
        self.chain = SolarProperty(client, system.contract, system.system_id)
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
        #: how long one run waits for a just-sent transaction's receipt (the hash is stored: a longer wait goes on
        #: at the next run)
        self.receipt_wait_s = receipt_wait_s
        #: what the pending period waits for (confirmations, a receipt), set while finishing it
        self.waiting: str | None = None
        self.root_check_key = f"root-check:{system.ref}"

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
        except FeeAboveCap as exc:
            # the chain asks more than the operator's cap: wait for fees to fall, looking again at every check
            # (no growing back-off: a fee spike ends by itself, and the next check should see that at once)
            if exc.message != self.backoff.last_error:
                log.warning("settlement of system %d waits: %s", self.system.system_id, exc)
            self.backoff.failures += 1
            self.backoff.last_error = str(exc)
            self.backoff.not_before = now
            self.trouble = report.trouble = "fee-cap"
            report.waiting = str(exc)
            self._save_backoff()
            if force:
                raise
            return report
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
        """Finish pending periods (periods the approver cancelled among them: settlement.disputes sets them back to
        prepared), adopt periods only the chain knows, then prepare and settle closed ones (and, every
        `root_check_interval_s`, check the settled periods' roots on chain)."""
        self.waiting = None
        self._check_roots_when_due()
        find_cancelled(self.factory, self.chain, self.system.ref)  # sets them back to prepared: finished below
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
                report.waiting = self.waiting or f"period {pending.period_id}: transaction {pending.tx_hash} not " \
                                                 "final yet"
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
            return pending_period(session, self.system.ref)

    def _db_last(self, session: Session) -> tuple[int, int]:
        return last_period(session, self.system.ref)

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
            start, end = period_bounds(oldest.ts_ms, self.period_s, last_end)
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
    def _settle_call(self, row: SettlementPeriod) -> ContractCall:
        consumption = [int(c["wh"]) for c in json.loads(row.consumption_json)]
        return self.chain.settle_call(row.period_id, row.start_s, row.end_s, bytes.fromhex(row.readings_root[2:]),
                                      row.mam_root, row.reading_count, row.generation_wh, consumption)

    def _attempts(self, row: SettlementPeriod) -> list[Attempt]:
        """The transactions signed for `row`'s current nonce, oldest first (a replaced one may still be mined)."""
        if row.nonce is None or row.tx_hash is None:
            return []
        with self.factory() as session:
            rows = session.scalars(select(SettlementTransaction).where(
                SettlementTransaction.period_ref == row.id, SettlementTransaction.nonce == row.nonce)
                .order_by(SettlementTransaction.id)).all()
            found = [Attempt(r.tx_hash, r.raw_tx, r.nonce, r.gas,
                             Fees(int(r.max_fee_wei), None if r.tip_wei is None else int(r.tip_wei)),
                             as_utc(r.created_at).timestamp()) for r in rows]
        if all(a.tx_hash != row.tx_hash for a in found):
            # signed by an SCB before transactions were recorded (migration 0005): its fees are unknown
            found.append(Attempt(row.tx_hash, row.raw_tx or "", row.nonce, 0, None, as_utc(row.created_at).timestamp()))
        return found

    def _mined(self, attempts: list[Attempt]) -> tuple[Attempt, dict] | None:
        for attempt in attempts:
            receipt = self.client.receipt(attempt.tx_hash)
            if receipt is not None:
                return attempt, receipt
        return None

    def _finish(self, row: SettlementPeriod) -> str:
        """Bring a prepared/submitted period to `settled` or `abandoned`; returns the state it is in afterwards.

        The chain is asked before anything is (re)sent: what it holds wins. A receipt of *any* transaction signed
        for the period's nonce counts; the period is settled once that receipt is `confirmations` blocks deep on
        the canonical chain. A receipt that disappears, or moves to a block with another hash, is a reorg: the
        depth counts again, and a transaction the reorg dropped is sent again (docs/settlement.md "Finality").
        """
        what = f"settle period {row.period_id}"
        attempts = self._attempts(row)
        mined = self._mined(attempts)
        if mined is not None:
            attempt, receipt = mined
            if receipt["status"] == 1:
                if not self._deep_enough(row, attempt, receipt):
                    return SUBMITTED
            else:
                failure = self.client.explain_failure(receipt, what, self._settle_call(row))
                log.error("period %d: transaction %s failed: %s", row.period_id, attempt.tx_hash, failure)
                self._record_error(row.id, str(failure))
        elif row.block_hash is not None:
            log.warning("period %d: block %s that held transaction %s was reorganised away; settling again",
                        row.period_id, row.block_hash, row.tx_hash)
            self._set_block(row, None, None)
            row = self._reload(row)
        view = self.chain.snapshot()  # the period and the system's last period from the same block
        on_chain = self.chain_period(row.period_id, view)
        # cancelled by the approver (SolarProperty 2's dispute window, settlement.disputes): the chain holds the
        # period's id and times but no bills; it awaits this hub's corrected settlement, sent below like any other
        correcting = on_chain is not None and on_chain.cancelled
        if on_chain is not None and not correcting:
            root = on_chain.readings_root_hex
            if root != row.readings_root:
                message = (f"period {row.period_id} of system {self.system.system_id} is on chain with readings "
                           f"root {root}, but this hub prepared {row.readings_root}: another hub settles this "
                           "system, or this database is not the one that settled it; an operator must decide")
                self._record_error(row.id, message)
                raise PeriodConflict(message, row.period_id, root, row.readings_root)
            ours = mined if mined is not None and mined[1]["status"] == 1 else None
            self._mark_settled(row, due_time=on_chain.due_time, mined=ours)
            return SETTLED
        last_id, last_end = self.chain_last(view)
        if not correcting and (last_id >= row.period_id or last_end > row.start_s):
            self._abandon(row, last_id)
            return ABANDONED
        if attempts and mined is None:
            try:
                return self._pending(row, attempts)
            except StaleNonce:
                log.info("period %d: the nonce of %s is used by another transaction; signing again with the next "
                         "nonce", row.period_id, row.tx_hash)
        if row.tx_hash:
            self._clear_tx(row)
            row = self._reload(row)
        return self._submit(row, reason=NEW_NONCE if attempts else FIRST)

    def _deep_enough(self, row: SettlementPeriod, attempt: Attempt, receipt: dict) -> bool:
        """Whether the receipt is `confirmations` blocks deep on the canonical chain; records its block."""
        number, block_hash = int(receipt["blockNumber"]), "0x" + bytes(receipt["blockHash"]).hex()
        if row.block_hash != block_hash or row.tx_hash != attempt.tx_hash:
            if row.block_hash is not None and row.block_hash != block_hash:
                log.warning("period %d: its transaction moved from block %s to block %d (%s): a reorg; counting "
                            "confirmations again", row.period_id, row.block_hash, number, block_hash)
            self._set_block(row, number, block_hash, attempt)
        depth = self.client.block_number() - number + 1
        confirmations = self.client.settings.confirmations
        if depth < confirmations:
            self.waiting = (f"period {row.period_id}: transaction {attempt.tx_hash} in block {number}, {depth} of "
                            f"{confirmations} confirmations")
            return False
        if self.client.block_hash(number) != block_hash:  # the node is switching branches: look again later
            self.waiting = f"period {row.period_id}: block {number} is being reorganised"
            return False
        return True

    def _pending(self, row: SettlementPeriod, attempts: list[Attempt]) -> str:
        """Our transaction is not mined: see whether its nonce was taken, it was dropped, or it is stuck; act."""
        newest = attempts[-1]
        if self.client.mined_nonce() > newest.nonce and self._mined(attempts) is None:
            # the account's nonce moved past ours and none of ours is mined: another transaction took it
            raise StaleNonce(f"nonce {newest.nonce} was taken by another transaction of {self.client.sender}")
        if not any(self.client.known(a.tx_hash) for a in attempts):
            if not newest.raw:
                raise StaleNonce(f"transaction {newest.tx_hash} is gone and its bytes were not kept")
            try:
                self.client.send(newest.raw)  # dropped by the node (pool eviction, node restart) or never sent
                log.info("period %d: the node does not know transaction %s (dropped): sent it again",
                         row.period_id, newest.tx_hash)
            except Underpriced as exc:  # dropped because the base fee rose above its max fee: new fees now
                log.info("period %d: transaction %s was dropped and its fees no longer do (%s): replacing it",
                         row.period_id, newest.tx_hash, exc)
                self._replace(row, newest)
        elif self.wall() - newest.created_at >= self.client.settings.replace_after_s:
            self._replace(row, newest)
        return self._await(row)

    def _replace(self, row: SettlementPeriod, stuck: Attempt) -> None:
        """Re-sign the stuck transaction's nonce with both fee fields raised (settlement.fees.bump) and send it;
        the stuck one stays recorded (it may still be mined instead)."""
        s = self.client.settings
        try:
            current: Fees | None = self.client.fees()
        except FeeAboveCap:
            current = None
        old = stuck.fees or (current if current is not None else self.client.fees())
        if stuck.fees is None:  # unknown fees (signed before they were recorded): at least what the chain asks now
            old = Fees(max(1, old.max_fee * 8 // 9), None if old.tip is None else old.tip * 8 // 9)
        fees = bump(old, current, max_fee_cap=s.max_fee_wei, tip_cap=s.max_priority_fee_wei)
        gas = stuck.gas or None
        signed = self.client.sign(self._settle_call(row), f"settle period {row.period_id}", nonce=stuck.nonce,
                                  fees=fees, gas=gas, extra_gas=NEW_SLOT_GAS * len(json.loads(row.consumption_json)))
        self._record_attempt(row, signed, REPLACEMENT)
        log.warning("period %d: transaction %s not mined after %.0f s: replaced by %s (nonce %d, %s)", row.period_id,
                    stuck.tx_hash, self.wall() - stuck.created_at, signed.tx_hash, signed.nonce, fees.describe())
        try:
            self.client.send(signed)
        except Underpriced as exc:  # the pool wants more than +12.5 %: the stuck one stays; next check bumps again
            log.warning("period %d: replacement %s refused: %s", row.period_id, signed.tx_hash, exc)

    def _await(self, row: SettlementPeriod) -> str:
        """Wait (at most `receipt_wait_s`) for a receipt of any of the period's transactions, then look again."""
        deadline = time.monotonic() + self.receipt_wait_s
        delay = 0.05
        while True:
            fresh = self._reload(row)
            if self._mined(self._attempts(fresh)) is not None:
                return self._finish(fresh)
            if time.monotonic() >= deadline:
                self.waiting = f"period {row.period_id}: transaction {fresh.tx_hash} not mined yet"
                return SUBMITTED
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def _submit(self, row: SettlementPeriod, reason: str = "first") -> str:
        now_ms = self.clock.now_ms()
        if now_ms is not None:
            self.chain_clock.before_transaction(now_ms // 1000)
        call = self._settle_call(row)
        try:
            # A bill's due time is the landing block's time + grace: estimated in one block, a holder's new debt
            # may extend their last ledger entry; landing a second later it needs a new storage slot (SSTORE
            # 20k). Reserve that for every holder so the transaction never runs out of gas.
            holders = len(json.loads(row.consumption_json))
            signed = self.client.sign(call, f"settle period {row.period_id}", extra_gas=NEW_SLOT_GAS * holders)
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
            session.add(_attempt_row(row.id, signed, reason))
        log.info("period %d: sending settle transaction %s (nonce %d, %s)", row.period_id, signed.tx_hash,
                 signed.nonce, signed.fees.describe() if signed.fees else "")
        try:
            self.client.send(signed)
        except StaleNonce:  # taken between signing and sending: the next run re-signs with the next nonce
            return SUBMITTED
        return self._await(row)

    def _record_attempt(self, row: SettlementPeriod, signed: SignedTx, reason: str) -> None:
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            fresh.tx_hash, fresh.raw_tx, fresh.nonce = signed.tx_hash, signed.raw, signed.nonce
            fresh.attempts += 1
            session.add(_attempt_row(row.id, signed, reason))

    def _set_block(self, row: SettlementPeriod, number: int | None, block_hash: str | None,
                   attempt: Attempt | None = None) -> None:
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            fresh.block_number, fresh.block_hash = number, block_hash
            if attempt is not None:  # the mined one of several: the period's transaction from now on
                fresh.tx_hash, fresh.raw_tx = attempt.tx_hash, attempt.raw or fresh.raw_tx

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

    def _mark_settled(self, row: SettlementPeriod, due_time: int,
                      mined: tuple[Attempt, dict] | None = None) -> None:
        block = block_hash = None
        tx_hash = row.tx_hash
        if mined is None and row.tx_hash:
            receipt = self.client.receipt(row.tx_hash)
            if receipt is not None:
                mined = (Attempt(row.tx_hash, row.raw_tx or "", row.nonce or 0, 0, None, 0.0), receipt)
        if mined is not None and mined[1]["status"] == 1:
            receipt = mined[1]
            tx_hash = mined[0].tx_hash
            block, block_hash = int(receipt["blockNumber"]), "0x" + bytes(receipt["blockHash"]).hex()
            self.last_settle_gas = int(receipt["gasUsed"])
        with transaction(self.factory) as session:
            fresh = session.get(SettlementPeriod, row.id)
            assert fresh is not None
            fresh.state = SETTLED
            fresh.tx_hash = tx_hash
            fresh.raw_tx = None
            fresh.block_number = block
            fresh.block_hash = block_hash
            fresh.due_time = due_time
            fresh.settled_at = utcnow()
            fresh.last_error = None
        log.info("period %d settled on chain (transaction %s, block %s, bills due at %d)", row.period_id, tx_hash,
                 block, due_time)

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

    # -- after finality: the settled periods' roots on chain -------------------------------------------------
    def _check_roots_when_due(self) -> None:
        with self.factory() as session:
            state = load_json_state(session, self.root_check_key) or {}
        if self.wall() < float(state.get("next_at", 0.0)):
            return
        self.check_roots()
        with transaction(self.factory) as session:
            save_json_state(session, self.root_check_key,
                            {"next_at": self.wall() + self.client.settings.root_check_interval_s,
                             "checked_at": self.wall()})

    def check_roots(self) -> list[int]:
        """Compare the newest ROOT_CHECK_PERIODS settled periods' roots on chain (one snapshot) with ours; returns
        the periods a reorg deeper than `confirmations` removed, which are set back to `submitted` so that the
        next step sends their transaction again. Another root on chain is a PeriodConflict."""
        with self.factory() as session:
            rows = session.scalars(select(SettlementPeriod).where(
                SettlementPeriod.system_ref == self.system.ref, SettlementPeriod.state == SETTLED)
                .order_by(SettlementPeriod.period_id.desc()).limit(ROOT_CHECK_PERIODS)).all()
        if not rows:
            return []
        # every period at one block, the periodInfo calls in JSON-RPC batches (not one request per period)
        on_chain_of = self.chain.snapshot().period_infos([row.period_id for row in rows])
        reopened: list[int] = []
        for row in rows:
            on_chain = on_chain_of[row.period_id]
            if on_chain is None:
                log.error("period %d was settled (block %s) but the chain no longer holds it: a reorg deeper than "
                          "ethereum.confirmations (%d); settling it again", row.period_id, row.block_number,
                          self.client.settings.confirmations)
                with transaction(self.factory) as session:
                    fresh = session.get(SettlementPeriod, row.id)
                    assert fresh is not None
                    fresh.state = SUBMITTED if fresh.nonce is not None else PREPARED
                    fresh.block_number = fresh.block_hash = None
                    fresh.settled_at = None
                    fresh.last_error = "removed from the chain by a reorg after it was final; settled again"
                reopened.append(row.period_id)
            elif on_chain.readings_root_hex != row.readings_root:
                message = (f"period {row.period_id} of system {self.system.system_id} is on chain with readings root "
                           f"{on_chain.readings_root_hex}, but this hub settled {row.readings_root}; an operator "
                           "must decide")
                self._record_error(row.id, message)
                raise PeriodConflict(message, row.period_id, on_chain.readings_root_hex, row.readings_root)
        if not reopened:
            log.debug("root check: the %d newest settled periods hold their roots on chain", len(rows))
        return reopened

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
        events = view.period_settled_events(period_id)
        event = events[-1] if events else None  # the latest settlement of the period (a corrected one has two)
        mam_root = event.mam_root if event is not None else ""
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
                consumption_json="[]", state=SETTLED, tx_hash=event.tx_hash if event is not None else None,
                block_number=event.block_number if event is not None else None, due_time=due, settled_at=utcnow(),
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
