"""The outbox from outside the publisher: producers enqueue, the status layer reads how it drains.

The energy manager calls `enqueue` in the same transaction that stores the readings the message carries, so a
reading is never stored without its message or the other way round. `blocked_channels` and `oldest_queued` are
what `scb status` and the dashboard show of the queue (read-only, in the caller's session).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mam_client.crypto.trits import is_trytes
from mam_client.models import ATTACHED, PREPARED, QUEUED, OutboxMessage
from mam_client.mam.errors import InvalidInput
from scb.timefmt import as_utc, utc_iso_dt

#: Largest message accepted, in trytes. Why: a MAM message is attached as one bundle of 2187-tryte
#: fragments; 32 KiB of JSON (2 trytes per byte) keeps a bundle under ~35 transactions, which a legacy node
#: accepts in one attachToTangle call and a Pi does its PoW for in seconds. A publish window of readings is
#: a few KiB.
MAX_MESSAGE_TRYTES = 65536


def validate_message(message: str) -> str:
    if not is_trytes(message) or not message:
        raise InvalidInput("a MAM message must be a non-empty string of trytes (9A-Z)")
    if len(message) > MAX_MESSAGE_TRYTES:
        raise InvalidInput(f"a MAM message may have at most {MAX_MESSAGE_TRYTES} trytes, not {len(message)}")
    return str(message)


def enqueue(session: Session, channel: str, message: str) -> OutboxMessage:
    """Add a message for `channel` to the outbox (flushes to get its id; the caller commits).

    The channel is created by the publisher on first use (seed file, first root); `channel` must be one of the
    configured channel names, which the caller knows from the configuration.
    """
    validate_message(message)
    if not channel or len(channel) > 64:
        raise InvalidInput("a channel name must have 1 to 64 characters")
    row = OutboxMessage(channel=channel, message=str(message), state=QUEUED)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class BlockedChannel:
    """A channel whose oldest unattached message the node refused: nothing after it is published until it is.

    `since` is the first refusal of this message, `retry_at` the publisher's next (slow) try, `refusals` how
    many times in a row the node said no."""

    channel: str
    message_id: int
    reason: str
    since: datetime
    retry_at: datetime | None
    refusals: int

    def to_json(self) -> dict[str, object]:
        return {"channel": self.channel, "message_id": self.message_id, "reason": self.reason,
                "since": utc_iso_dt(self.since), "retry_at": utc_iso_dt(self.retry_at),
                "refusals": self.refusals}


def blocked_channels(session: Session) -> list[BlockedChannel]:
    """Every channel blocked by a refused message, by channel name."""
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.state == PREPARED, OutboxMessage.refusal.is_not(None))
        .order_by(OutboxMessage.id)
    ).all()
    blocked: dict[str, BlockedChannel] = {}
    for row in rows:
        if row.channel in blocked:  # only the oldest can be refused (order); be robust anyway
            continue
        assert row.refusal is not None
        since = row.refused_at or row.prepared_at or row.created_at
        blocked[row.channel] = BlockedChannel(
            channel=row.channel, message_id=row.id, reason=row.refusal, since=as_utc(since),
            retry_at=as_utc(row.retry_at) if row.retry_at else None, refusals=row.refusals)
    return [blocked[name] for name in sorted(blocked)]


def oldest_queued(session: Session) -> dict[str, datetime]:
    """`created_at` of the oldest message not yet attached (queued or prepared), per channel; a channel with
    nothing waiting is absent. The oldest overall is `min(oldest_queued(s).values(), default=None)`."""
    rows = session.execute(
        select(OutboxMessage.channel, func.min(OutboxMessage.created_at))
        .where(OutboxMessage.state != ATTACHED).group_by(OutboxMessage.channel)
    ).all()
    return {channel: as_utc(created) for channel, created in rows if created is not None}
