"""The outbox's stored form of a message part: zlib's deflate of the ASCII, and a clear error for anything else."""
from __future__ import annotations

import zlib

import pytest

from mam_client.stored_trytes import CorruptBody, pack, unpack


def test_a_part_is_stored_as_zlib_deflates_it_and_read_back() -> None:
    trytes = "HELLO9WORLD" * 300
    assert zlib.decompress(pack(trytes)) == trytes.encode("ascii")  # the format, read by zlib itself
    assert unpack(zlib.compress(trytes.encode("ascii"))) == trytes  # any zlib stream of it, at any level
    assert unpack(pack('["TX9", "TX9"]')) == '["TX9", "TX9"]'  # a bundle's JSON list
    assert len(pack(trytes)) < len(trytes) // 20


@pytest.mark.parametrize("data", [b"", b"not deflated", zlib.compress(b"\xff\xfe"), zlib.compress(b"ABC")[:-3]])
def test_a_damaged_part_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(CorruptBody, match="does not inflate"):
        unpack(data)
