"""The hub's archive: every MAM payload it published, kept in its database because tangle nodes prune.

One reader for `scb mam fetch`, `scb verify` and the dashboard: given an address, the payloads the hub
prepared for it (normally one; a re-sent message has the same payload). Open the factory with
`scb.db.open_existing` so that a machine that is not a hub gets no archive rather than an empty database.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.models import PAYLOAD, MessageBody, OutboxMessage
from mam_client.stored_trytes import unpack

ArchiveReader = Callable[[str], list[str]]


def archive_reader(factory: sessionmaker[Session]) -> ArchiveReader:
    """A function address -> payloads published there, read from the hub's database."""

    def read(address: str) -> list[str]:
        with factory() as session:
            return [unpack(data) for data in session.scalars(
                select(MessageBody.data).join(OutboxMessage, OutboxMessage.id == MessageBody.message_id)
                .where(OutboxMessage.address == address, MessageBody.part == PAYLOAD)
                .order_by(OutboxMessage.id))]

    return read


def root_lookup(factory: sessionmaker[Session]) -> Callable[[str], str | None]:
    """A function address -> the MAM root the hub signed the message at that address under (or None)."""

    def lookup(address: str) -> str | None:
        with factory() as session:
            return session.scalars(select(OutboxMessage.root).where(
                OutboxMessage.address == address, OutboxMessage.root.is_not(None)).limit(1)).first()

    return lookup
