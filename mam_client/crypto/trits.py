"""Trits and trytes.

A trit string is a `bytes` object of signed int8 values (-1 is stored as 0xFF): compact, hashable, and readable
by the C primitives without copying. Tryte strings are `str` over the alphabet `9A-Z`; PyOTA `TryteString`
values are accepted wherever a tryte string is (they convert with `str()`), and `tests/mam_client/crypto`
checks these conversions against PyOTA's own.
"""
from __future__ import annotations

import re

from mam_client.crypto import _curl

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TRYTES_RE = re.compile(r"[9A-Z]*")
HASH_TRYTES = 81
HASH_TRITS = 243


def is_trytes(value: object, length: int | None = None) -> bool:
    """True for a `str` (or PyOTA TryteString) made of `9A-Z` only, of the given length if any."""
    text = str(value) if not isinstance(value, str) and type(value).__name__ == "TryteString" else value
    if not isinstance(text, str) or TRYTES_RE.fullmatch(text) is None:
        return False
    return length is None or len(text) == length


def trits(trytes: str) -> bytes:
    """Trytes to trits (3 per tryte, little-endian). Raises ValueError on a character outside 9A-Z."""
    return _curl.trits_from_trytes(str(trytes))


def trytes(trit_string: bytes) -> str:
    """Trits (a multiple of 3) to trytes."""
    return _curl.trytes_from_trits(trit_string)


def add(a: bytes, b: bytes) -> bytes:
    """Balanced ternary add per trit, a (+) b, over the shorter length."""
    return _curl.trits_add(a, b, 1)


def sub(a: bytes, b: bytes) -> bytes:
    """Balanced ternary subtract per trit, a (-) b, over the shorter length."""
    return _curl.trits_add(a, b, -1)


def values(trit_string: bytes) -> list[int]:
    """The trits as Python ints (-1, 0, 1)."""
    return [v - 256 if v > 127 else v for v in trit_string]


def from_values(values_: list[int] | tuple[int, ...]) -> bytes:
    """Python ints (-1, 0, 1) to a trit string."""
    return bytes(v & 0xFF for v in values_)


def trit_sum(trit_string: bytes) -> int:
    return sum(values(trit_string))


def to_int(trit_string: bytes) -> int:
    """Little-endian balanced ternary value."""
    result = 0
    for t in reversed(values(trit_string)):
        result = result * 3 + t
    return result


def from_int(value: int, length: int) -> bytes:
    """`value` in little-endian balanced ternary over exactly `length` trits, modulo 3**length."""
    out = []
    v = value
    for _ in range(length):
        r = v % 3
        d = -1 if r == 2 else r
        out.append(d)
        v = (v - d) // 3
    return from_values(out)


def tryte_values(trit_string: bytes) -> list[int]:
    """Value (-13..13) of each tryte of a trit string whose length is a multiple of 3."""
    v = values(trit_string)
    return [v[i] + 3 * v[i + 1] + 9 * v[i + 2] for i in range(0, len(v), 3)]


def ascii_to_trytes(text: str) -> str:
    """iota.js asciiToTrytes: each character code c (0..255) becomes ALPHABET[c % 27] + ALPHABET[c // 27]."""
    out = []
    for ch in text:
        c = ord(ch)
        if c > 255:
            raise ValueError("only characters 0..255 can be converted to trytes")
        out.append(ALPHABET[c % 27] + ALPHABET[c // 27])
    return "".join(out)


def trytes_to_ascii(tryte_string: str) -> str:
    """iota.js trytesToAscii (odd trailing tryte ignored)."""
    out = []
    for i in range(0, len(tryte_string) - 1, 2):
        c = ALPHABET.index(tryte_string[i]) + 27 * ALPHABET.index(tryte_string[i + 1])
        out.append(chr(c))
    return "".join(out)
