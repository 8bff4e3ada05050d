"""Database tables of the publisher: channels (state, never the seed) and the outbox of MAM messages.

A message row moves through states:
    queued    enqueued by a producer (energy manager, HTTP API); nothing computed yet
    prepared  payload computed and the channel state advanced, in the same transaction (write-ahead):
              from here on the row is only ever re-sent, never re-signed
    attached  on the tangle: address, bundle hash and transaction hashes recorded; the archive keeps it

A prepared message the node refused (HTTP 4xx, `NodeRefused`) stays prepared and blocks its channel: the
nextRoot chain cannot skip it. `refusal`, `refused_at`, `refusals` and `retry_at` say why, since when and when
the publisher tries again (docs/mam.md "Refusals"); they are cleared when it is attached. `last_error` is the
last transient error (node unreachable, 5xx), kept apart so that a refusal is never mistaken for an outage.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from scb.db import Base
from scb.timefmt import utcnow

QUEUED = "queued"
PREPARED = "prepared"
ATTACHED = "attached"
MESSAGE_STATES = (QUEUED, PREPARED, ATTACHED)


class Channel(Base):
    """A MAM channel this hub writes. The seed stays in its 0600 file; `state_json` holds the rest."""

    __tablename__ = "mam_channels"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    security: Mapped[int] = mapped_column(Integer)
    #: the channel's first root (what a reader needs, and what the contract holds for a system)
    first_root: Mapped[str] = mapped_column(String(81))
    #: mam.js channel state fields except the seed and side key (start, count, nextCount, index, nextRoot)
    state_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxMessage(Base):
    """One MAM message to publish, in channel order (`id` ascending)."""

    __tablename__ = "mam_messages"
    __table_args__ = (Index("ix_mam_messages_channel_state", "channel", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(64), index=True)  # a configured channel name
    message: Mapped[str] = mapped_column(Text)  # plaintext message trytes
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # prepared (write-ahead)
    key_index: Mapped[int | None] = mapped_column(Integer, nullable=True)  # global key index start+index
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    root: Mapped[str | None] = mapped_column(String(81), nullable=True)
    address: Mapped[str | None] = mapped_column(String(81), nullable=True, index=True)
    next_root: Mapped[str | None] = mapped_column(String(81), nullable=True)
    prepared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # attached
    bundle_hash: Mapped[str | None] = mapped_column(String(81), nullable=True)
    tx_hashes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, tail first
    bundle_trytes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list: the archive copy
    attached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # the last transient error
    # refused by the node (migration 0003): the node's reason, the first refusal of this streak, how many in a
    # row (the slow schedule doubles per refusal) and when the publisher tries again
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)
    refused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    refusals: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
