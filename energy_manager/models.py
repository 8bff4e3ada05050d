"""Database tables of the energy manager: readings, input counters, and small persistent state.

`energy_readings` is the hub's record of what the meters said; every later step (MAM messages, Merkle leaves,
bills, `scb verify`) starts from its `canonical` bytes and `digest`. Rows are only ever inserted, then linked:
`message_id` once the reading's publish window is batched into a MAM message, `period` when settlement assigns
the reading to a settlement period. `energy_meter_heads` holds each meter's newest stored reading: what the
monitor resumes from, and what keeps (hub, meter, seq) unique (`MeterHead`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from scb.db import Base
from scb.timefmt import utcnow


class StoredReading(Base):
    """One reading of one meter. (hub, meter, seq) is unique and seq runs 1, 2, 3, ... per meter: the reading's
    transaction moves the meter's `MeterHead` from seq - 1 to seq, or fails.

    Why no index leads with the meter or the party: a sample inserts a row per meter, and such an index takes those
    rows at a page per meter or household, in the WAL and again at the checkpoint (issue 16, migrations 0006-0008:
    at 1,000 meters the (hub, meter, seq) and party indexes wrote more than the readings). Every index here takes
    a sample's rows at one place: time, the batch, the period (NULL until settled), and households' settled
    readings, which settlement assigns a period at a time."""

    __tablename__ = "energy_readings"
    __table_args__ = (
        Index("ix_energy_readings_batch", "message_id", "window_start_ms"),
        Index("ix_energy_readings_party_period", "party", "period", sqlite_where=text("period IS NOT NULL"),
              postgresql_where=text("period IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # the canonical fields, duplicated in columns for queries (the canonical bytes are authoritative)
    hub: Mapped[str] = mapped_column(String(64))
    meter: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    party: Mapped[str] = mapped_column(String(64))
    circuit: Mapped[str] = mapped_column(String(16))
    ts_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    register_wh: Mapped[int] = mapped_column(BigInteger)
    power_w: Mapped[int] = mapped_column(BigInteger)
    salt: Mapped[str] = mapped_column(String(32))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    #: keccak256(canonical), 64 lowercase hex digits; not indexed, as a random key costs a page write per reading
    #: (migration 0007): unique through (hub, meter, seq), which the canonical bytes contain; `scb verify` finds
    #: a reading by (ts_ms, hub, meter, seq) and then compares its digest
    digest: Mapped[str] = mapped_column(String(64))
    # derived by energy_manager.registers: energy since the meter's previous reading, never negative
    delta_wh: Mapped[int] = mapped_column(BigInteger)
    interval_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: comma-separated: first, gap, reset, spike, rebase ('' for an ordinary reading)
    flags: Mapped[str] = mapped_column(String(64), default="")
    #: start of the publish window (community-clock ms) the reading belongs to
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    #: the MAM message that carries this reading (NULL until its window is batched)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("mam_messages.id"), nullable=True)
    #: settlement period, assigned by settlement (NULL until then)
    period: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MeterHead(Base):
    """A meter's newest stored reading, one row per meter, written in the transaction that stores the reading.

    Why a table: it is what the monitor resumes from (seq, time and register of the last reading), found by key
    instead of by an index of all readings that leads with the meter; and the store moves it from seq - 1 to seq
    with a conditional UPDATE in the same transaction, so a second writer or a stale monitor fails instead of
    storing a meter's seq twice. A sample updates its ~1,000 rows in a few pages (they are small and few)."""

    __tablename__ = "energy_meter_heads"

    hub: Mapped[str] = mapped_column(String(64), primary_key=True)
    meter: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the household of the newest reading (`scb export --holder` knows a holder before it is settled)
    party: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    register_wh: Mapped[int] = mapped_column(BigInteger)


class InputCounter(Base):
    """How often each kind of bad input or device trouble happened, per device or meter, and the last case."""

    __tablename__ = "energy_counters"
    __table_args__ = (UniqueConstraint("source", "kind", name="uq_energy_counters_source_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: a device name ("sim", "emontx") or a meter id, or "clock"
    source: Mapped[str] = mapped_column(String(64))
    #: e.g. malformed, non_numeric, out_of_range, clock_backwards, clock_jump, unavailable, reset, gap, spike
    kind: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: what happened last time, with the raw input (printable, shortened); never a secret
    last_detail: Mapped[str] = mapped_column(Text, default="")


class EnergyState(Base):
    """Small JSON state that must survive restarts: the community clock anchor, simulator checkpoints."""

    __tablename__ = "energy_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
