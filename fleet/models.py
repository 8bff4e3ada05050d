"""The fleet's tables: its own database and its own migrations (fleet/migrations), apart from any hub's.

Every row belongs to one hub (`hub_ref`), and each table has the natural key that makes an upload idempotent: a
replayed batch, or a row sent again after the hub crashed before it stored its cursor, inserts nothing
(`INSERT ... ON CONFLICT DO NOTHING` on that key).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scb.db import NAMING_CONVENTION
from scb.timefmt import utcnow


class FleetBase(DeclarativeBase):
    """Declarative base of the fleet's tables. Why not `scb.db.Base`: the fleet's schema is migrated by its own
    revisions; on the hub's metadata, the hub's migration check would demand its tables in every hub."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AllowedAccount(FleetBase):
    """An account `scb fleet allow` admitted (besides the hubs of `[fleet] contract`)."""

    __tablename__ = "fleet_allowed_accounts"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)  # checksummed
    note: Mapped[str] = mapped_column(Text, default="")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FleetHub(FleetBase):
    """A hub that uploaded at least once, keyed by its Ethereum account; its last heartbeat."""

    __tablename__ = "fleet_hubs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(42), unique=True)
    #: the hub's own id (`[hub] id`), as its last batch said
    name: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_upload_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_batch_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: the hub's clock when it built the heartbeat (ms); an older heartbeat (a replay) does not replace a newer one
    heartbeat_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    heartbeat_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    upload_backlog: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class FleetBatch(FleetBase):
    """Every batch accepted, by digest: a replay of the same batch is answered at once and stores nothing."""

    __tablename__ = "fleet_batches"
    __table_args__ = (UniqueConstraint("hub_ref", "digest", name="uq_fleet_batches_hub_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(66))
    items: Mapped[int] = mapped_column(Integer)
    stored: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FleetReading(FleetBase):
    """A reading: its canonical bytes (authoritative; the columns are parsed from them) and digest."""

    __tablename__ = "fleet_readings"
    __table_args__ = (
        UniqueConstraint("hub_ref", "digest", name="uq_fleet_readings_hub_digest"),
        Index("ix_fleet_readings_hub_ts", "hub_ref", "ts_ms"),
        Index("ix_fleet_readings_hub_meter_ts", "hub_ref", "meter", "ts_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    hub_reading_id: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    meter: Mapped[str] = mapped_column(String(64))
    party: Mapped[str] = mapped_column(String(64))
    circuit: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    register_wh: Mapped[int] = mapped_column(BigInteger)
    power_w: Mapped[int] = mapped_column(BigInteger)
    delta_wh: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(String(64), default="")
    hub_message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the MAM address of the message that carries it (NULL until the hub has published it)
    address: Mapped[str | None] = mapped_column(String(81), nullable=True, index=True)


class FleetMessage(FleetBase):
    """A published MAM message of a hub (the hub's archive copy)."""

    __tablename__ = "fleet_messages"
    __table_args__ = (UniqueConstraint("hub_ref", "hub_message_id", name="uq_fleet_messages_hub_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    hub_message_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    root: Mapped[str] = mapped_column(String(81))
    address: Mapped[str] = mapped_column(String(81), index=True)
    next_root: Mapped[str | None] = mapped_column(String(81), nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    bundle_hash: Mapped[str | None] = mapped_column(String(81), nullable=True)
    reading_count: Mapped[int] = mapped_column(Integer, default=0)
    attached_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class FleetTransaction(FleetBase):
    """One transaction of a published bundle, for the permanode (findTransactions, getTrytes)."""

    __tablename__ = "fleet_transactions"

    hash: Mapped[str] = mapped_column(String(81), primary_key=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    address: Mapped[str] = mapped_column(String(81), index=True)
    bundle: Mapped[str] = mapped_column(String(81), index=True)
    trytes: Mapped[str] = mapped_column(Text)


class FleetSettlement(FleetBase):
    """A settled period of a hub's system (the chain holds its root; this is the hub's record of it)."""

    __tablename__ = "fleet_settlements"
    __table_args__ = (UniqueConstraint("hub_ref", "chain_id", "contract", "system_id", "period_id",
                                       name="uq_fleet_settlements_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    system_id: Mapped[int] = mapped_column(BigInteger)
    period_id: Mapped[int] = mapped_column(BigInteger)
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    readings_root: Mapped[str] = mapped_column(String(66))
    mam_root: Mapped[str] = mapped_column(String(81))
    reading_count: Mapped[int] = mapped_column(Integer)
    late_count: Mapped[int] = mapped_column(Integer)
    generation_wh: Mapped[int] = mapped_column(BigInteger)
    consumption_json: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    channel_root: Mapped[str] = mapped_column(String(81))
    holders_json: Mapped[str] = mapped_column(Text)
    settled_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class FleetProof(FleetBase):
    """A reading's Merkle proof in the period it was anchored in (siblings, 32 bytes each, concatenated)."""

    __tablename__ = "fleet_proofs"
    __table_args__ = (UniqueConstraint("hub_ref", "digest", name="uq_fleet_proofs_hub_digest"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    system_id: Mapped[int] = mapped_column(BigInteger)
    period_id: Mapped[int] = mapped_column(BigInteger)
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class FleetDecision(FleetBase):
    """A supply decision of a hub (a change of what it does with one holder's portion, and the standing behind it)."""

    __tablename__ = "fleet_decisions"
    __table_args__ = (UniqueConstraint("hub_ref", "hub_decision_id", name="uq_fleet_decisions_hub_decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub_ref: Mapped[int] = mapped_column(ForeignKey("fleet_hubs.id"))
    hub_decision_id: Mapped[int] = mapped_column(BigInteger)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    system_id: Mapped[int] = mapped_column(BigInteger)
    party: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(42))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    prepaid_wei: Mapped[str] = mapped_column(String(80))
    debt_wei: Mapped[str] = mapped_column(String(80))
    next_due: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    decided_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
