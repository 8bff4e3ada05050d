"""Creating and parsing MAM v0 messages (SPEC §5-7), byte-identical to @iota/mam.js 1.0.0-beta.10.

Pure: no I/O. Untrusted payloads are length-checked before every use, so malformed input raises
`InvalidPayload` rather than an IndexError (mam.js throws RangeError there).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mam_client.crypto import _curl
from mam_client.crypto.curl import Curl, hash_chains, hash_trits
from mam_client.crypto.trits import HASH_TRYTES, is_trytes, trits, trytes, tryte_values, add, sub, trit_sum
from mam_client.mam import keys, pascal
from mam_client.mam.channel import ChannelState
from mam_client.mam.errors import InvalidInput, InvalidPayload, SignatureMismatch, WrongKeyOrRoot

ZERO_KEY = bytes(243)
SIGNATURE_TRITS_PER_LEVEL = 6561
NONCE_TRITS = 81


@dataclass(frozen=True)
class CreatedMessage:
    payload: str
    root: str
    address: str
    next_root: str

    def to_json(self) -> dict[str, str]:
        return {"payload": self.payload, "root": self.root, "address": self.address, "nextRoot": self.next_root}


@dataclass(frozen=True)
class ParsedMessage:
    message: str
    next_root: str

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "nextRoot": self.next_root}


@lru_cache(maxsize=4096)
def _leaf(seed: str, security: int, key_index: int) -> bytes:
    # Leaves are the costly part and each is needed twice (message k's next tree is message k+1's tree).
    return keys.leaf_address(trits(seed), key_index, security)


@lru_cache(maxsize=64)
def _tree(seed: str, security: int, start: int, count: int) -> tuple[tuple[bytes, ...], ...]:
    levels = keys.tree_levels([_leaf(seed, security, start + i) for i in range(count)])
    return tuple(tuple(level) for level in levels)


def channel_root(state: ChannelState) -> str:
    """Root of the channel's current tree (mam.js channelRoot)."""
    return trytes(_tree(state.seed, state.security, state.start, state.count)[-1][0])


def decode_address(root: str, mode: str) -> str:
    """Address a message is attached to: the root (public) or Curl-P-81 of the root (private, restricted)."""
    if not is_trytes(root, HASH_TRYTES):
        raise InvalidInput("the root must be 81 trytes")
    if mode == "public":
        return str(root)
    if mode in ("private", "restricted"):
        return trytes(hash_trits(trits(root), 81))
    raise InvalidInput(f"mode must be public, private or restricted, not {mode!r}")


def _mask(sponge: Curl, plain: bytes) -> bytes:
    out = bytearray()
    for off in range(0, len(plain), 243):
        block = plain[off : off + 243]
        out += add(block, sponge.rate(len(block)))
        sponge.absorb(block)
    return bytes(out)


def _unmask(sponge: Curl, cipher: bytes) -> bytes:
    out = bytearray()
    for off in range(0, len(cipher), 243):
        block = sub(cipher[off : off + 243], sponge.rate(min(243, len(cipher) - off)))
        out += block
        sponge.absorb(block)
    return bytes(out)


def create_message(state: ChannelState, message: str) -> CreatedMessage:
    """Sign and mask `message` (trytes) with the channel's next one-time key; advances `state` like mam.js."""
    if not message or not is_trytes(message):
        raise InvalidInput("The message must be in trytes")
    message = str(message)
    seed, sec = state.seed, state.security
    levels = _tree(seed, sec, state.start, state.count)
    root = levels[-1][0]
    next_root = _tree(seed, sec, state.start + state.count, state.next_count)[-1][0]
    path = keys.siblings(levels, state.index)

    msg = trits(message)
    header = pascal.encode(state.index) + pascal.encode(len(msg))
    sponge = Curl(27)
    sponge.absorb(trits(state.side_key) if state.side_key else ZERO_KEY)
    sponge.absorb(root)
    sponge.absorb(header)
    group_a = _mask(sponge, next_root + msg)
    nonce, _batches = _curl.mam_nonce(bytes(sponge.state), sec, 27)
    group_b = _mask(sponge, nonce)
    hmac = sponge.rate()

    blocks = keys.key_blocks(trits(seed), state.key_index, sec)
    # sig_i = H^(13 - t_i)(k_i) and k_i = H(r_i), so one chain of 14 - t_i steps from r_i
    steps = [14 - t for t in tryte_values(hmac[: 81 * sec])][: 27 * sec]
    signature = b"".join(hash_chains(blocks, steps))
    group_c = _mask(sponge, signature + pascal.encode(len(path)) + b"".join(path))
    body = header + group_a + group_b + group_c
    body += bytes((-len(body)) % 3)

    root_trytes = trytes(root)
    result = CreatedMessage(
        payload=trytes(body),
        root=root_trytes,
        address=decode_address(root_trytes, state.mode),
        next_root=trytes(next_root),
    )
    if state.index == state.count - 1:
        state.start += state.next_count
        state.index = 0
    else:
        state.index += 1
    state.next_root = result.next_root
    return result


def parse_message(payload: str, root: str, side_key: str | None = None) -> ParsedMessage:
    """Unmask and verify a payload against `root` (mam.js parseMessage); the side key is absorbed as given."""
    if not is_trytes(payload):
        raise InvalidInput("the payload must be trytes (9A-Z)")
    if not is_trytes(root, HASH_TRYTES):
        raise InvalidInput("the root must be 81 trytes")
    if side_key is not None and not is_trytes(side_key):
        raise InvalidInput("the side key must be trytes (9A-Z)")
    if not payload:
        raise InvalidPayload("the payload is empty")
    data = trits(payload)
    index, used_i = pascal.decode(data, 0)
    length, used_l = pascal.decode(data, used_i)
    head = used_i + used_l
    if head + 243 + length + NONCE_TRITS > len(data):
        raise InvalidPayload("the payload is shorter than its header says (truncated?)")

    sponge = Curl(27)
    sponge.absorb(trits(side_key) if side_key else ZERO_KEY)
    sponge.absorb(trits(root))
    sponge.absorb(data[:head])
    next_root = _unmask(sponge, data[head : head + 243])
    message = _unmask(sponge, data[head + 243 : head + 243 + length])
    _unmask(sponge, data[head + 243 + length : head + 243 + length + NONCE_TRITS])
    hmac = sponge.rate()
    security = next((s for s in (1, 2, 3) if trit_sum(hmac[: 81 * s]) == 0), 0)
    if security == 0:
        raise WrongKeyOrRoot("Message Hash did not have a hamming weight of zero, security level is invalid "
                             "(wrong side key or root, or the payload was altered)")
    rest = _unmask(sponge, data[head + 243 + length + NONCE_TRITS :])
    sig_len = SIGNATURE_TRITS_PER_LEVEL * security
    if len(rest) < sig_len + 4:
        raise InvalidPayload("the payload is too short for its signature (truncated?)")
    # The hmac checked out, so everything up to the nonce is authentic. What follows the signature (the
    # sibling count and the path) is masked with a keystream that depends on the signature: a changed
    # signature tryte scrambles it. An undecodable count or a missing path therefore means the signature
    # section was altered, and is reported as the signature failure mam.js reports for the same input.
    try:
        count, used_n = pascal.decode(rest, sig_len)
    except InvalidPayload:
        raise SignatureMismatch("Signature did not match expected root (signature section is corrupt)") from None
    sib_start = sig_len + used_n
    if count > 64 or len(rest) < sib_start + 243 * count:
        raise SignatureMismatch("Signature did not match expected root (authentication path is incomplete)")

    signature = rest[:sig_len]
    steps = [13 + t for t in tryte_values(hmac[: 81 * security])][: 27 * security]
    ends = hash_chains([signature[i : i + 243] for i in range(0, sig_len, 243)], steps)
    leaf = hash_trits(keys.digest_from_chain_ends(ends))
    path = [rest[sib_start + 243 * k : sib_start + 243 * (k + 1)] for k in range(count)]
    if trytes(keys.root_from_path(leaf, index, path)) != root:
        raise SignatureMismatch("Signature did not match expected root")
    if length % 3:
        raise InvalidPayload("the message length is not a whole number of trytes")
    return ParsedMessage(message=trytes(message), next_root=trytes(next_root))
