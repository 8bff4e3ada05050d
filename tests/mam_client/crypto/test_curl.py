"""Curl-P primitives: against the reference vectors and against PyOTA's pure-Python Curl."""
from __future__ import annotations

import random

import pytest
from iota import TryteString
from iota.crypto import pycurl

from mam_client.crypto import _curl
from mam_client.crypto.curl import Curl, hash_chains, hash_trits
from mam_client.crypto.trits import from_values, trits, trytes, values

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def rand_trytes(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def pyota_hash(tryte_string: str, rounds: int) -> str:
    """PyOTA's Curl with the given rounds (PyOTA reads the module constant at transform time)."""
    old = pycurl.NUMBER_OF_ROUNDS
    pycurl.NUMBER_OF_ROUNDS = rounds
    try:
        sponge = pycurl.Curl()
        sponge.absorb(TryteString(tryte_string).as_trits())
        out: list[int] = []
        sponge.squeeze(out)
        return str(TryteString.from_trits(out))
    finally:
        pycurl.NUMBER_OF_ROUNDS = old


def test_reference_hashes(mam_vectors) -> None:
    p = mam_vectors["primitives"]
    seed = trits(p["input_seed_trytes"])
    assert trytes(hash_trits(seed, 27)) == p["curl_p27_of_seed"]
    assert trytes(hash_trits(seed, 81)) == p["curl_p81_of_seed"]
    assert trytes(hash_trits(bytes(243), 27)) == p["curl_p27_of_243_zero_trits"]
    assert trytes(hash_trits(bytes(243), 81)) == p["curl_p81_of_243_zero_trits"]
    assert trytes(hash_trits(seed + seed, 27)) == p["curl_p27_of_486_trits_seed_seed"]


def test_partial_absorb_overwrites_only_its_trits(mam_vectors) -> None:
    p = mam_vectors["primitives"]
    seed = trits(p["input_seed_trytes"])
    assert trytes(hash_trits(seed[:12], 27)) == p["curl_p27_partial_absorb_12_trits_of_seed"]
    sponge = Curl(27)
    sponge.absorb(seed)
    sponge.absorb(seed[:12])
    assert trytes(sponge.rate()) == p["curl_p27_absorb_seed_then_partial_12_trits"]


@pytest.mark.parametrize("rounds", [27, 81])
def test_matches_pyota_curl(rounds: int) -> None:
    rng = random.Random(rounds)
    for n in (81, 162, 243, 405):
        text = rand_trytes(rng, n)
        assert trytes(hash_trits(trits(text), rounds)) == pyota_hash(text, rounds)


def test_hash_chains_equal_repeated_hashing() -> None:
    rng = random.Random(7)
    blocks = [trits(rand_trytes(rng, 81)) for _ in range(70)]  # more than one 64-lane batch
    steps = [rng.randrange(0, 30) for _ in blocks]
    got = hash_chains(blocks, steps)
    for block, n, out in zip(blocks, steps, got):
        cur = block
        for _ in range(n):
            cur = hash_trits(cur)
        assert out == cur


def test_hash_chains_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError):
        hash_chains([bytes(242)], [1])
    with pytest.raises(ValueError):
        hash_chains([bytes(243)], [1, 2])
    with pytest.raises(ValueError):
        _curl.transform(bytearray(728), 27)
    with pytest.raises(ValueError):
        _curl.transform(bytearray(729), 26)


def test_tryte_conversion_matches_pyota() -> None:
    rng = random.Random(3)
    for n in (1, 2, 81, 100):
        text = rand_trytes(rng, n)
        assert values(trits(text)) == TryteString(text).as_trits()
        assert trytes(trits(text)) == text
        assert trytes(from_values(TryteString(text).as_trits())) == text


@pytest.mark.parametrize("bad", ["abc", "A-B", "Ä", "9 9"])
def test_tryte_conversion_refuses_non_trytes(bad: str) -> None:
    with pytest.raises(ValueError):
        trits(bad)


def test_trit_conversion_refuses_bad_trits() -> None:
    with pytest.raises(ValueError):
        trytes(bytes([0, 0]))
    with pytest.raises(ValueError):
        trytes(bytes([2, 0, 0]))


def test_mam_nonce_meets_the_security_property() -> None:
    rng = random.Random(11)
    for security in (1, 2, 3):
        state = trits(rand_trytes(rng, 243))
        nonce, batches = _curl.mam_nonce(state, security, 27)
        assert batches >= 1 and len(nonce) == 81
        sponge = Curl(27)
        sponge.state = bytearray(state)
        sponge.absorb(nonce)
        h = values(sponge.rate())
        sums = [sum(h[: 81 * j]) for j in range(1, security + 1)]
        assert sums[-1] == 0 and all(s != 0 for s in sums[:-1])
        # trits 4..54 of the nonce are the state's own (SPEC §11 item 16)
        assert nonce[4:54] == state[4:54]
