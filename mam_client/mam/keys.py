"""One-time keys, leaf addresses and the Merkle tree of a MAM channel (SPEC §4), all Curl-P-27.

The expensive part of MAM is turning a key index into a leaf address: 27·s key segments, each hashed 27 times.
The segments are independent, so `hash_chains` evaluates them as parallel lanes of one bitsliced sponge.
"""
from __future__ import annotations

from collections.abc import Sequence

from mam_client.crypto.curl import Curl, hash_chains, hash_trits
from mam_client.crypto.trits import from_int, to_int

SEGMENTS_PER_LEVEL = 27
#: number of Curl-P-27 applications from a squeezed key block r_i to its public chain end: H(r_i) is the key
#: segment k_i, and the digest uses H^26(k_i)
CHAIN_LENGTH = 27


def subseed(seed_trits: bytes, key_index: int) -> bytes:
    """H27(seed + key_index), the seed read as a 243-trit little-endian balanced number (carry out lost)."""
    return hash_trits(from_int(to_int(seed_trits) + key_index, 243))


def key_blocks(seed_trits: bytes, key_index: int, security: int) -> list[bytes]:
    """The 27·s squeezed blocks r_i of a key; the key segments are k_i = H27(r_i)."""
    sponge = Curl(27)
    sponge.absorb(subseed(seed_trits, key_index))
    squeezed = sponge.squeeze(SEGMENTS_PER_LEVEL * security * 243)
    return [squeezed[i : i + 243] for i in range(0, len(squeezed), 243)]


def digest_from_chain_ends(chain_ends: list[bytes]) -> bytes:
    """D = H27 over the concatenation of all 27·s chain ends (one sponge, SPEC §4.3)."""
    return hash_trits(b"".join(chain_ends))


def leaf_address(seed_trits: bytes, key_index: int, security: int) -> bytes:
    """A_j = H27(D_j) for global key index j."""
    blocks = key_blocks(seed_trits, key_index, security)
    ends = hash_chains(blocks, [CHAIN_LENGTH] * len(blocks))
    return hash_trits(digest_from_chain_ends(ends))


def tree_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first: parents are H27(left ‖ right), an odd last node is carried up."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        nxt = [hash_trits(cur[i] + cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        levels.append(nxt)
    return levels


def siblings(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """Authentication path of leaf `index` (power-of-two trees; the codec refuses other counts)."""
    path = []
    i = index
    for level in levels[:-1]:
        path.append(level[i ^ 1] if (i ^ 1) < len(level) else level[i])
        i //= 2
    return path


def root_from_path(leaf: bytes, index: int, path: list[bytes]) -> bytes:
    """The root a leaf and its authentication path lead to (SPEC §4.7)."""
    cur = leaf
    for level, sib in enumerate(path):
        cur = hash_trits(sib + cur) if (index >> level) & 1 else hash_trits(cur + sib)
    return cur
