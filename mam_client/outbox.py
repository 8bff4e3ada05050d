"""Producers' side of the outbox: enqueue a MAM message in the caller's transaction.

The energy manager calls `enqueue` in the same transaction that stores the readings the message carries, so a
reading is never stored without its message or the other way round.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from mam_client.crypto.trits import is_trytes
from mam_client.models import QUEUED, OutboxMessage
from mam_client.mam.errors import InvalidInput

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
