"""The "pascal" integer encoding of MAM header fields (SPEC §6.1), for non-negative integers.

Decoding is defensive because the input is untrusted: the scan for the terminating tryte and the flag field
are bounded by the available trits, so a malformed payload raises `InvalidPayload`, never IndexError or
recursion errors (mam.js raises RangeError there).
"""
from __future__ import annotations

from mam_client.crypto.trits import from_values, values
from mam_client.mam.errors import InvalidPayload

ZERO = from_values([1, 0, 0, -1])

#: Largest value the decoder accepts. MAM fields are indices, lengths in trits and sibling counts; a payload
#: is far below 3**40 trits, and refusing bigger values keeps a hostile header from making huge integers.
MAX_DATA_TRYTES = 8


def encode(value: int) -> bytes:
    if value < 0:
        raise ValueError("pascal encoding is for non-negative integers")
    if value == 0:
        return ZERO
    n = 1
    while (3**n - 1) // 2 < value:
        n += 1
    n = -(-n // 3) * 3
    count = n // 3
    digits: list[int] = []
    v = value
    for _ in range(n):
        r = v % 3
        d = -1 if r == 2 else r
        digits.append(d)
        v = (v - d) // 3
    flags = 0
    for j in range(count):
        tryte = digits[3 * j : 3 * j + 3]
        tv = tryte[0] + 3 * tryte[1] + 9 * tryte[2]
        if (j < count - 1 and tv >= 0) or (j == count - 1 and tv < 0):
            digits[3 * j : 3 * j + 3] = [-t for t in tryte]
            flags |= 1 << j
    flag_trits: list[int] = []
    f = flags
    for _ in range(count):
        r = f % 3
        d = -1 if r == 2 else r
        flag_trits.append(d)
        f = (f - d) // 3
    return from_values(digits + flag_trits)


def decode(trit_string: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode the integer starting at `offset`; return (value, trits consumed)."""
    t = values(trit_string[offset : offset + 8 * MAX_DATA_TRYTES])
    if len(t) >= 4 and t[:4] == [1, 0, 0, -1]:
        return 0, 4
    count = 0
    while True:
        j = count
        if 3 * j + 3 > len(t):
            raise InvalidPayload("integer field is truncated or has no terminating tryte")
        tv = t[3 * j] + 3 * t[3 * j + 1] + 9 * t[3 * j + 2]
        count += 1
        if tv > 0:
            break
        if count >= MAX_DATA_TRYTES:
            raise InvalidPayload("integer field is too long")
    if 4 * count > len(t):
        raise InvalidPayload("integer field is truncated (flags missing)")
    flags = 0
    for d in reversed(t[3 * count : 4 * count]):
        flags = flags * 3 + d
    if flags < 0:
        raise InvalidPayload("integer field has an invalid flag field")
    value = 0
    for j in range(count):
        tv = t[3 * j] + 3 * t[3 * j + 1] + 9 * t[3 * j + 2]
        value += (-tv if (flags >> j) & 1 else tv) * 27**j
    if value < 0:
        raise InvalidPayload("integer field has an invalid flag field")
    return value, 4 * count
