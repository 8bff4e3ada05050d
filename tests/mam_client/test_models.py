"""The outbox's large parts (mam_message_bodies): each written once, read back with the row, never rewritten."""
from __future__ import annotations

import zlib

import pytest
from sqlalchemy import select, text

from mam_client.models import BUNDLE, MESSAGE, PAYLOAD, OutboxMessage
from scb.db import make_engine, make_sessionmaker, transaction, upgrade


def test_a_messages_parts_are_rows_of_their_own_written_once(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    try:
        with transaction(factory) as session:
            session.add(OutboxMessage(channel="readings", message="HELLO"))
        with transaction(factory) as session:
            row = session.scalars(select(OutboxMessage)).one()
            assert (row.message, row.payload, row.bundle_trytes) == ("HELLO", None, None)
            row.payload = "PAYLOAD"
            row.state = "prepared"
        with transaction(factory) as session:
            row = session.scalars(select(OutboxMessage)).one()
            row.payload = "PAYLOAD"  # the same value again: nothing to write
            row.bundle_trytes = '["TX"]'
            with pytest.raises(ValueError, match="already has its payload; a part is written once"):
                row.payload = "OTHER"  # a second payload would be a message signed twice
        with engine.connect() as conn:
            parts = conn.execute(text("SELECT part, data FROM mam_message_bodies ORDER BY part")).all()
            # deflated (zlib), read back here without the code under test
            assert [(part, zlib.decompress(data)) for part, data in parts] == [
                (BUNDLE, b'["TX"]'), (MESSAGE, b"HELLO"), (PAYLOAD, b"PAYLOAD")]
            assert conn.execute(text("SELECT state FROM mam_messages")).scalar_one() == "prepared"
        with factory() as session:
            row = session.scalars(select(OutboxMessage)).one()
        # loaded with the row: still there once its session is closed (the publisher reads rows that way)
        assert (row.message, row.payload, row.bundle_trytes) == ("HELLO", "PAYLOAD", '["TX"]')
    finally:
        engine.dispose()
