"""Database tables of the publisher: channels (state, never the seed) and the outbox of MAM messages.

A message row moves through states:
    queued    enqueued by a producer (energy manager, HTTP API); nothing computed yet
    prepared  payload computed and the channel state advanced, in the same transaction (write-ahead):
              from here on the row is only ever re-sent, never re-signed
    attached  on the tangle: address, bundle hash and transaction hashes recorded; the archive keeps it

The large parts of a message - the plaintext, the payload, the attached bundle's trytes - are rows of
`mam_message_bodies`, each inserted once when it exists and never changed, deflated (mam_client.stored_trytes);
`OutboxMessage.message`, `.payload` and `.bundle_trytes` read and add them. Why not columns of the message row:
the row is updated at every step (prepared, an attempt counted, an error, attached), and a database rewrites a
whole row when it changes, its large values too: at 1,000 meters those rewrites were most of what the publisher
wrote to disk (issue 16, migration 0009).

A prepared message the node refused (HTTP 4xx, `NodeRefused`) stays prepared and blocks its channel: the
nextRoot chain cannot skip it. `refusal`, `refused_at`, `refusals` and `retry_at` say why, since when and when
the publisher tries again (docs/mam.md "Refusals"); they are cleared when it is attached. `last_error` is the
last transient error (node unreachable, 5xx), kept apart so that a refusal is never mistaken for an outage.
"""
from __future__ import annotations

from datetime import datetime
from typing import overload

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, attribute_keyed_dict, mapped_column, relationship

from mam_client.stored_trytes import pack, unpack
from scb.db import Base
from scb.timefmt import utcnow

QUEUED = "queued"
PREPARED = "prepared"
ATTACHED = "attached"
MESSAGE_STATES = (QUEUED, PREPARED, ATTACHED)
#: the parts of `mam_message_bodies`: the plaintext trytes (enqueued), the payload (prepared), the bundle (attached)
MESSAGE, PAYLOAD, BUNDLE = "message", "payload", "bundle"


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


class _Part:
    """A large part of a message as an attribute of `OutboxMessage`: read from its `bodies`, and added to them
    once. A second, different value raises: it would mean a message re-signed or re-attached."""

    def __init__(self, part: str, missing: str | None = None) -> None:
        self.part, self.missing = part, missing

    @overload
    def __get__(self, row: None, owner: type) -> "_Part": ...
    @overload
    def __get__(self, row: "OutboxMessage", owner: type) -> str | None: ...

    def __get__(self, row: "OutboxMessage | None", owner: type) -> "_Part | str | None":
        if row is None:  # on the class: the descriptor (the declarative constructor asks whether it is there)
            return self
        body = row.bodies.get(self.part)
        return unpack(body.data) if body is not None else self.missing

    def __set__(self, row: "OutboxMessage", trytes: str | None) -> None:
        if trytes is None:
            return
        body = row.bodies.get(self.part)
        if body is None:
            row.bodies[self.part] = MessageBody(part=self.part, data=pack(trytes))
        elif unpack(body.data) != trytes:
            raise ValueError(f"message {row.id} already has its {self.part}; a part is written once")


class MessageBody(Base):
    """One large part of a message (`MESSAGE`, `PAYLOAD` or `BUNDLE`), written once: see the module docstring."""

    __tablename__ = "mam_message_bodies"

    message_id: Mapped[int] = mapped_column(ForeignKey("mam_messages.id"), primary_key=True)
    part: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: the part's text, deflated (mam_client.stored_trytes: 1.6 to 6.7 times fewer bytes on the SD card)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxMessage(Base):
    """One MAM message to publish, in channel order (`id` ascending)."""

    __tablename__ = "mam_messages"
    __table_args__ = (Index("ix_mam_messages_channel_state", "channel", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(64), index=True)  # a configured channel name
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: the large parts, by part name; loaded with the row (a message is read to be sent, archived or shown)
    bodies: Mapped[dict[str, MessageBody]] = relationship(collection_class=attribute_keyed_dict("part"),
                                                          lazy="selectin", cascade="all, delete-orphan")
    # prepared (write-ahead)
    key_index: Mapped[int | None] = mapped_column(Integer, nullable=True)  # global key index start+index
    root: Mapped[str | None] = mapped_column(String(81), nullable=True)
    address: Mapped[str | None] = mapped_column(String(81), nullable=True, index=True)
    next_root: Mapped[str | None] = mapped_column(String(81), nullable=True)
    prepared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # attached
    bundle_hash: Mapped[str | None] = mapped_column(String(81), nullable=True)
    tx_hashes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, tail first
    attached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # the last transient error
    # refused by the node (migration 0003): the node's reason, the first refusal of this streak, how many in a
    # row (the slow schedule doubles per refusal) and when the publisher tries again
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)
    refused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    refusals: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    #: the plaintext message trytes ("" for a row without one, as rows made by hand in tests)
    message = _Part(MESSAGE, "")
    #: the MAM payload trytes, from `prepared` on: only ever re-sent, never re-signed
    payload = _Part(PAYLOAD)
    #: JSON list of the attached bundle's transaction trytes, tail first: the archive copy
    bundle_trytes = _Part(BUNDLE)
