"""How the outbox stores a message's large parts (`mam_message_bodies.data`): the trytes' ASCII, deflated (pure).

Why deflate: the parts are written to an SD card once each, and bytes written wear it out (issue 16). A readings
message's plaintext is JSON in trytes, two per byte, and deflates about 6.7 times; a payload or a bundle is
trytes of signatures and masked text, about 4.75 bits of information in each 8-bit character, and deflates about
1.6 times (a bundle 1.8: its header fields hold runs of 9s). zlib is in every Python and takes under a millisecond
for a message's ~30,000 trytes (measured on a 70-reading message and a random payload of its length).

No SQLAlchemy here: `scb verify` reads the archive with plain sqlite3 (hub.verify_records).
"""
from __future__ import annotations

import zlib

from scb.errors import DataError

#: zlib's default level: level 9 makes a readings message 1.7% smaller for 1.7 times the time, a payload no smaller.
LEVEL = 6


class CorruptBody(DataError):
    """A stored part that does not inflate to trytes: the database was changed or damaged outside SCB."""


def pack(trytes: str) -> bytes:
    """The stored form of `trytes` (trytes, or the bundle's JSON list of them: ASCII either way)."""
    return zlib.compress(trytes.encode("ascii"), LEVEL)


def unpack(data: bytes) -> str:
    """The text `pack` stored; CorruptBody for data that does not inflate to ASCII."""
    try:
        text = zlib.decompress(bytes(data)).decode("ascii")
    except (zlib.error, UnicodeDecodeError, TypeError) as exc:
        raise CorruptBody(f"a stored message part does not inflate: {exc}") from None
    return text
