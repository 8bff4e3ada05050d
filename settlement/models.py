"""Database tables of the settlement: systems, periods, per-reading proofs, supply decisions, job state.

Why these live in the project database and not only on chain: the job must survive a crash between building a
period and the chain confirming it (the signed transaction is stored before it is sent), `scb verify` and
`scb proof export` on the hub need every reading's proof without rebuilding trees, and supply decisions with their
reasons are the hub's own record of why a household's loads were switched.

A period row moves through states:
    prepared   readings assigned (energy_readings.period), tree built, proofs stored - nothing sent yet
    submitted  a signed settle transaction is stored (hash, raw bytes, nonce) and may be on its way
    settled    the chain holds the period (receipt `confirmations` blocks deep, or found there on reconciliation)
    abandoned  the chain settled a later period first (another hub, a restored backup): this id can never be
               settled, so its readings were released to the next period
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from scb.db import Base
from scb.timefmt import utcnow

PREPARED = "prepared"
SUBMITTED = "submitted"
SETTLED = "settled"
ABANDONED = "abandoned"
PERIOD_STATES = (PREPARED, SUBMITTED, SETTLED, ABANDONED)

SUPPLY = "supply"
GRID = "grid"

#: APScheduler's SQLAlchemyJobStore table, declared here so that the migrations create it (the job store would
#: otherwise create it behind Alembic's back); the columns are exactly the job store's.
SCHEDULER_TABLE = "settlement_scheduler_jobs"
scheduler_jobs = Table(
    SCHEDULER_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class SettlementSystem(Base):
    """A solar system on a SolarProperty contract that this hub settles."""

    __tablename__ = "settlement_systems"
    __table_args__ = (UniqueConstraint("chain_id", "contract", "system_id", name="uq_settlement_systems_chain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    system_id: Mapped[int] = mapped_column(BigInteger)
    hub: Mapped[str] = mapped_column(String(42))
    #: the MAM channel whose first root the system was registered with
    channel: Mapped[str] = mapped_column(String(64))
    channel_root: Mapped[str] = mapped_column(String(81))
    #: JSON object party -> holder account
    holders_json: Mapped[str] = mapped_column(Text)
    #: registered by this hub on a development chain (the embedded demo)
    demo: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SettlementPeriod(Base):
    """One settlement period of a system, from preparation to confirmation."""

    __tablename__ = "settlement_periods"
    __table_args__ = (UniqueConstraint("system_ref", "period_id", name="uq_settlement_periods_system_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_ref: Mapped[int] = mapped_column(ForeignKey("settlement_systems.id"))
    period_id: Mapped[int] = mapped_column(BigInteger)
    #: community-clock seconds, [start, end)
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    readings_root: Mapped[str] = mapped_column(String(66))
    #: root of the channel message that carries the period's first anchored reading
    mam_root: Mapped[str] = mapped_column(String(81))
    reading_count: Mapped[int] = mapped_column(Integer)
    late_count: Mapped[int] = mapped_column(Integer, default=0)
    generation_wh: Mapped[int] = mapped_column(BigInteger)
    #: JSON list in holder order: {"account", "party", "wh"}
    consumption_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=PREPARED)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    raw_tx: Mapped[str | None] = mapped_column(Text, nullable=True)
    nonce: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: hash of the block that holds the settlement (0x hex): a reorg shows as another hash at `block_number`
    block_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    due_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SettlementTransaction(Base):
    """Every settle transaction signed for a period: the first one and each replacement (same nonce, higher fees)
    or re-signing (a new nonce after another transaction took the old one).

    Why every one is kept: a replaced transaction may still be mined instead of its replacement (whichever a block
    producer picks first), so the job looks for a receipt of *any* of them; and an operator sees what was paid
    and why. The period row's `tx_hash` / `raw_tx` / `nonce` are those of the newest one (or the mined one).
    """

    __tablename__ = "settlement_transactions"
    __table_args__ = (Index("ix_settlement_transactions_period", "period_ref", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    period_ref: Mapped[int] = mapped_column(ForeignKey("settlement_periods.id"))
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw_tx: Mapped[str] = mapped_column(Text)
    nonce: Mapped[int] = mapped_column(BigInteger)
    gas: Mapped[int] = mapped_column(BigInteger)
    #: wei as decimal strings (they may exceed 64 bits); `tip_wei` NULL: a legacy transaction (gasPrice = max fee)
    max_fee_wei: Mapped[str] = mapped_column(String(80))
    tip_wei: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: why it was signed: "first", "replacement" (stuck), "new nonce" (the old one was taken)
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReadingProof(Base):
    """A reading's Merkle proof in the period it was anchored in."""

    __tablename__ = "settlement_proofs"
    __table_args__ = (Index("ix_settlement_proofs_period", "period_ref"),)

    reading_id: Mapped[int] = mapped_column(ForeignKey("energy_readings.id"), primary_key=True)
    period_ref: Mapped[int] = mapped_column(ForeignKey("settlement_periods.id"))
    #: the sibling hashes from leaf to root, 32 bytes each, concatenated (a day of readings at one-minute samples
    #: is ~10k proofs: binary keeps them at a third of the size of hex JSON on the hub's SD card)
    proof: Mapped[bytes] = mapped_column(LargeBinary)

    def siblings(self) -> list[bytes]:
        return [self.proof[i:i + 32] for i in range(0, len(self.proof), 32)]
    #: a straggler: its timestamp lies before the period it was anchored in (docs/settlement.md "Stragglers")
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class SupplyDecision(Base):
    """A change of what the hub does with one holder's portion, and why. Only changes are stored."""

    __tablename__ = "settlement_supply_decisions"
    __table_args__ = (Index("ix_settlement_supply_decisions_holder", "system_ref", "party", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_ref: Mapped[int] = mapped_column(ForeignKey("settlement_systems.id"))
    party: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(42))
    #: "supply" (feed the holder's loads) or "grid" (sell that portion to the grid)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    #: the standing it was based on (wei amounts as decimal strings: they may exceed 64 bits)
    status: Mapped[str] = mapped_column(String(16))
    prepaid_wei: Mapped[str] = mapped_column(String(80))
    debt_wei: Mapped[str] = mapped_column(String(80))
    next_due: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    community_ms: Mapped[int] = mapped_column(BigInteger)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actuator: Mapped[str] = mapped_column(String(16))
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    apply_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SettlementState(Base):
    """Small JSON state of the settlement process: back-off, the last block scanned for events."""

    __tablename__ = "settlement_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def latest_system(session: Session, contract: str | None = None) -> SettlementSystem | None:
    """The newest system this hub settles (optionally on `contract`): the one status, verify and the
    dashboard show."""
    query = select(SettlementSystem)
    if contract:
        query = query.where(SettlementSystem.contract == contract)
    return session.scalars(query.order_by(SettlementSystem.id.desc()).limit(1)).first()


def pending_period(session: Session, system_ref: int) -> SettlementPeriod | None:
    """The system's oldest period still on its way (prepared or submitted): the one the settlement job finishes
    before it plans another, and the one `scb status` reports as waiting (settlement.health)."""
    return session.scalars(
        select(SettlementPeriod).where(SettlementPeriod.system_ref == system_ref,
                                       SettlementPeriod.state.in_((PREPARED, SUBMITTED)))
        .order_by(SettlementPeriod.period_id).limit(1)).first()


def last_period(session: Session, system_ref: int) -> tuple[int, int]:
    """(highest period id, latest end) of the system's periods that are not abandoned; (0, 0) without one."""
    row = session.execute(
        select(func.max(SettlementPeriod.period_id), func.max(SettlementPeriod.end_s))
        .where(SettlementPeriod.system_ref == system_ref, SettlementPeriod.state != ABANDONED)).first()
    return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)


def period_bounds(ts_ms: int, period_s: int, last_end: int) -> tuple[int, int]:
    """[start, end) (community seconds) of the next period, which holds the reading at `ts_ms`: aligned on
    `period_s`, starting no earlier than the end of the last period (`last_end`)."""
    k = ts_ms // 1000 // period_s
    return max(k * period_s, last_end), (k + 1) * period_s
