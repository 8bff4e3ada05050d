"""The hub's table of the fleet upload: where each stream of the durable upload queue stands.

The queue is the outbox pattern the hub already uses, in its polling form: the rows to upload are the components'
own rows (readings, attached MAM messages, settled periods and their proofs, supply decisions), already durable in
the hub's database; this table holds, per stream, the newest hub id the fleet acknowledged (`cursor`). The uploader
sends the rows past each cursor in id order, and moves the cursors only after the fleet answered 200, in one
transaction. Why no copy of every row into a queue table: it would double the hub's writes on an SD card for data
that is already stored once, and a crash between the copy and the upload would need the same cursor anyway.
After a crash between the fleet's answer and the cursor update, the batch is sent again; the fleet stores nothing
twice (docs/fleet.md "Idempotency").
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scb.db import Base
from scb.timefmt import utcnow


class FleetUploadCursor(Base):
    """One stream of the upload queue (`reading`, `message`, `settlement`, `proof`, `decision`), or `batch` (whose
    cursor is the sequence number of the last acknowledged batch)."""

    __tablename__ = "fleet_upload_cursors"

    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: the newest hub id (of the stream's table) the fleet acknowledged; 0: nothing yet
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: items of this stream acknowledged so far
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
