"""Curl-P sponge (27 or 81 rounds) with the absorb/squeeze semantics of @iota/mam.js.

Semantics that differ from PyOTA's `Curl` and matter for MAM (SPEC §2, §10):
* `absorb` overwrites only as many rate trits as the input has left (a partial block keeps the rest of the
  state) and transforms at least once;
* `rate()` reads the first 243 state trits without transforming.

The transform itself and the multi-lane hash chains run in C (`_curl.c`).
"""
from __future__ import annotations

from mam_client.crypto import _curl

STATE_TRITS = 729
RATE_TRITS = 243
ZERO_HASH = bytes(RATE_TRITS)


class Curl:
    """One Curl-P sponge."""

    __slots__ = ("rounds", "state")

    def __init__(self, rounds: int = 27) -> None:
        if rounds not in (27, 81):
            raise ValueError("Curl-P rounds must be 27 or 81")
        self.rounds = rounds
        self.state = bytearray(STATE_TRITS)

    def reset(self) -> None:
        self.state = bytearray(STATE_TRITS)

    def absorb(self, trit_string: bytes, offset: int = 0, length: int | None = None) -> None:
        """Absorb `length` trits from `offset` (all remaining by default); at least one transform."""
        if length is None:
            length = len(trit_string) - offset
        state, rounds = self.state, self.rounds
        while True:
            limit = min(length, RATE_TRITS)
            chunk = trit_string[offset : offset + limit]
            state[: len(chunk)] = chunk
            _curl.transform(state, rounds)
            offset += limit
            length -= limit
            if length <= 0:
                break

    def squeeze(self, length: int = RATE_TRITS) -> bytes:
        """Squeeze `length` trits: copy out up to 243 trits of rate, transform, repeat."""
        out = bytearray()
        while length > 0:
            n = min(length, RATE_TRITS)
            out += self.state[:n]
            _curl.transform(self.state, self.rounds)
            length -= n
        return bytes(out)

    def rate(self, length: int = RATE_TRITS) -> bytes:
        """The first `length` trits of the state, without transforming."""
        return bytes(self.state[:length])

    def copy(self) -> "Curl":
        other = Curl(self.rounds)
        other.state = bytearray(self.state)
        return other


def hash_trits(trit_string: bytes, rounds: int = 27) -> bytes:
    """H(x): a fresh sponge absorbs all of x, then its rate is read (= the first squeezed block)."""
    sponge = Curl(rounds)
    sponge.absorb(trit_string)
    return sponge.rate()


def hash_chains(blocks: list[bytes], steps: list[int], rounds: int = 27) -> list[bytes]:
    """[H^steps[i](blocks[i])] for 243-trit blocks, evaluated 64 chains at a time (bitsliced)."""
    if len(blocks) != len(steps):
        raise ValueError("one step count per block")
    if any(len(b) != RATE_TRITS for b in blocks):
        raise ValueError("hash chain inputs must be 243 trits")
    if any(not 0 <= s <= 255 for s in steps):
        raise ValueError("hash chain steps must be 0..255")
    out = _curl.hash_chains(b"".join(blocks), bytes(steps), rounds)
    return [out[i : i + RATE_TRITS] for i in range(0, len(out), RATE_TRITS)]
