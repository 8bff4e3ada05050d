"""The legacy IOTA transaction: its 2673-tryte layout, its hash and its bundle essence (pure, no I/O).

Both the tangle node (validation, indexing) and local proof of work (`mam_client.pow`, which writes trunk,
branch, tag and timestamps before searching a nonce) need the field offsets, so they live here once. Parsing is
done on tryte slices and our C Curl rather than PyOTA's `Transaction.from_tryte_string`, whose pure-Python
Curl-P-81 costs ~140 ms per transaction hash (SPEC §10) against ~1.5 ms here. Kerl (the bundle hash) and
the zero-value bundle a publisher attaches are built here too, on whole trytes and Python integers: PyOTA's
`prepare_transfer` converts every trit in Python and re-hashes the whole bundle each time it fixes an insecure
bundle hash (about 20 times per bundle), which took seconds per 16-transaction message (issue 16).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sha3 import keccak_384  # pysha3, PyOTA's own dependency: Kerl's original Keccak, not SHA3-384

from mam_client.crypto import trits as T
from mam_client.crypto.curl import hash_trits

from scb.errors import DataError

TRANSACTION_TRYTES = 2673
TRANSACTION_TRITS = 3 * TRANSACTION_TRYTES
HASH_TRYTES = 81
NULL_HASH = "9" * HASH_TRYTES
NULL_TRANSACTION = "9" * TRANSACTION_TRYTES
#: IRI's MAX_TIMESTAMP_VALUE, written into attachmentTimestampUpperBound by attachToTangle.
MAX_TIMESTAMP_VALUE = (3**27 - 1) // 2

_TRYTES_RE = re.compile(r"[9A-Z]+")

# (start, end) in trytes, in transaction order
SIGNATURE = (0, 2187)
ADDRESS = (2187, 2268)
VALUE = (2268, 2295)
OBSOLETE_TAG = (2295, 2322)
TIMESTAMP = (2322, 2331)
CURRENT_INDEX = (2331, 2340)
LAST_INDEX = (2340, 2349)
BUNDLE = (2349, 2430)
TRUNK = (2430, 2511)
BRANCH = (2511, 2592)
TAG = (2592, 2619)
ATTACHMENT_TIMESTAMP = (2619, 2628)
ATTACHMENT_TIMESTAMP_LOWER = (2628, 2637)
ATTACHMENT_TIMESTAMP_UPPER = (2637, 2646)
NONCE = (2646, 2673)
#: address, value, obsoleteTag, timestamp, currentIndex, lastIndex: what the Kerl bundle hash covers.
ESSENCE = (ADDRESS[0], LAST_INDEX[1])


class TransactionFormatError(DataError, ValueError):
    """The trytes are not a well-formed transaction (length or alphabet)."""


def is_trytes(value: object, length: int | None = None) -> bool:
    """True for a non-empty str over 9A-Z of the given length (any length when None)."""
    return (
        isinstance(value, str)
        and (length is None or len(value) == length)
        and _TRYTES_RE.fullmatch(value) is not None
    )


def tryte_int(trytes: str) -> int:
    """Balanced-ternary integer of a tryte field (little-endian, as IRI and iota.js read it)."""
    return T.to_int(T.trits(trytes))


def int_trytes(value: int, length: int) -> str:
    """`value` as a tryte field of `length` trytes (modulo 3**(3*length), balanced)."""
    return T.trytes(T.from_int(value, 3 * length))


def field(trytes: str, span: tuple[int, int]) -> str:
    return trytes[span[0] : span[1]]


def with_field(trytes: str, span: tuple[int, int], value: str) -> str:
    """A copy of `trytes` with one field replaced (the value must have the field's exact length)."""
    if len(value) != span[1] - span[0]:
        raise ValueError(f"field needs {span[1] - span[0]} trytes, got {len(value)}")
    return trytes[: span[0]] + value + trytes[span[1] :]


def transaction_hash(trytes: str) -> str:
    """Curl-P-81 hash of the 2673 transaction trytes (the transaction's identity and its PoW target)."""
    return T.trytes(hash_trits(T.trits(trytes), rounds=81))


def trailing_zero_trits(hash_trytes: str) -> int:
    """How many trailing trits of a hash are zero: the weight the PoW achieved (IRI's weightMagnitude)."""
    count = 0
    for t in reversed(T.values(T.trits(hash_trytes))):
        if t != 0:
            break
        count += 1
    return count


@dataclass(frozen=True)
class Transaction:
    """The fields of one transaction that the node indexes and validates. `trytes` is the wire form."""

    trytes: str
    hash: str
    address: str
    value: int
    obsolete_tag: str
    timestamp: int
    current_index: int
    last_index: int
    bundle: str
    trunk: str
    branch: str
    tag: str
    attachment_timestamp: int
    attachment_timestamp_lower: int
    attachment_timestamp_upper: int
    nonce: str

    @property
    def weight(self) -> int:
        return trailing_zero_trits(self.hash)


def parse(trytes: object, *, tx_hash: str | None = None) -> Transaction:
    """Parse transaction trytes. The hash is computed (Curl-P-81) unless the caller already has it.

    Raises TransactionFormatError for anything that is not 2673 trytes of 9A-Z.
    """
    if not isinstance(trytes, str):
        raise TransactionFormatError("transaction trytes must be a string")
    if len(trytes) != TRANSACTION_TRYTES:
        raise TransactionFormatError(f"transaction trytes must be {TRANSACTION_TRYTES} long, not {len(trytes)}")
    if not is_trytes(trytes):
        raise TransactionFormatError("transaction trytes may contain only 9 and A-Z")
    return Transaction(
        trytes=trytes,
        hash=tx_hash or transaction_hash(trytes),
        address=field(trytes, ADDRESS),
        value=tryte_int(field(trytes, VALUE)),
        obsolete_tag=field(trytes, OBSOLETE_TAG),
        timestamp=tryte_int(field(trytes, TIMESTAMP)),
        current_index=tryte_int(field(trytes, CURRENT_INDEX)),
        last_index=tryte_int(field(trytes, LAST_INDEX)),
        bundle=field(trytes, BUNDLE),
        trunk=field(trytes, TRUNK),
        branch=field(trytes, BRANCH),
        tag=field(trytes, TAG),
        attachment_timestamp=tryte_int(field(trytes, ATTACHMENT_TIMESTAMP)),
        attachment_timestamp_lower=tryte_int(field(trytes, ATTACHMENT_TIMESTAMP_LOWER)),
        attachment_timestamp_upper=tryte_int(field(trytes, ATTACHMENT_TIMESTAMP_UPPER)),
        nonce=field(trytes, NONCE),
    )


_TRYTE_VALUE = {c: (i if i <= 13 else i - 27) for i, c in enumerate("9ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_VALUE_TRYTE = {v: c for c, v in _TRYTE_VALUE.items()}
_KERL_MODULUS = 1 << 384


def _zero_top_trit(value: int) -> int:
    """A tryte value (-13..13) with its most significant trit set to 0 (Kerl zeroes trit 242 of a chunk)."""
    return value - 9 if value >= 5 else value + 9 if value <= -5 else value


def _kerl_chunk(chunk: str) -> bytes:
    """One 81-tryte chunk as Kerl absorbs it: the balanced-ternary integer (trit 242 zeroed) as 48 bytes of
    big-endian two's complement."""
    n = _zero_top_trit(_TRYTE_VALUE[chunk[80]])
    for c in reversed(chunk[:80]):
        n = n * 27 + _TRYTE_VALUE[c]
    return (n % _KERL_MODULUS).to_bytes(48, "big")


def _kerl_squeeze(digest: bytes) -> str:
    """The first Kerl squeeze: the 48-byte digest as a signed integer, in 81 balanced trytes (trit 242 zeroed)."""
    n = int.from_bytes(digest, "big", signed=True)
    out = []
    for _ in range(81):
        n, r = divmod(n, 27)
        if r > 13:
            r -= 27
            n += 1
        out.append(r)
    out[80] = _zero_top_trit(out[80])
    return "".join(_VALUE_TRYTE[v] for v in out)


def kerl(chunks: list[bytes]) -> str:
    """Kerl hash (81 trytes) of chunks already converted by `_kerl_chunk`, in order."""
    k = keccak_384()
    for chunk in chunks:
        k.update(chunk)
    return _kerl_squeeze(k.digest())


def kerl_trytes(trytes: str) -> str:
    """Kerl hash of trytes whose length is a multiple of 81 (one absorb, one squeeze)."""
    if len(trytes) % HASH_TRYTES or not trytes:
        raise ValueError("Kerl absorbs whole 81-tryte chunks")
    return kerl([_kerl_chunk(trytes[i : i + HASH_TRYTES]) for i in range(0, len(trytes), HASH_TRYTES)])


def bundle_hash(transactions: list[Transaction]) -> str:
    """Kerl over the essences of a bundle's transactions in index order (what `bundle` must equal)."""
    return kerl_trytes("".join(field(tx.trytes, ESSENCE) for tx in transactions))


def _insecure(bundle: str) -> bool:
    """True when the normalized bundle hash has a 13 ('M'): the hash iota.js and PyOTA never sign or send.

    Why it matters for zero-value bundles too: clients and nodes treat such a bundle as suspect, and the bundles
    of this hub must look like those of iota.js (docs/mam.md)."""
    for part in range(3):
        chunk = [_TRYTE_VALUE[c] for c in bundle[part * 27 : (part + 1) * 27]]
        total = sum(chunk)
        while total > 0:
            total -= 1
            for j in range(27):
                if chunk[j] > -13:
                    chunk[j] -= 1
                    break
        while total < 0:
            total += 1
            for j in range(27):
                if chunk[j] < 13:
                    chunk[j] += 1
                    break
        if 13 in chunk:
            return True
    return False


def zero_value_bundle(address: str, message: str, tag: str, timestamp_s: int) -> list[str]:
    """The transactions of a zero-value bundle carrying `message` at `address`, head first, ready for
    attachToTangle: what PyOTA's `prepare_transfer` returns for one such transfer, byte for byte.

    The message is cut into 2187-tryte fragments (the last padded with 9s); the tag (padded) is also the
    obsoleteTag, which in the tail is incremented until the bundle hash is secure (PyOTA's finalize)."""
    if not is_trytes(address, HASH_TRYTES) or not is_trytes(message) or not is_trytes(tag) or len(tag) > 27:
        raise ValueError("address (81 trytes), message (trytes) and tag (at most 27 trytes) expected")
    fragment = SIGNATURE[1] - SIGNATURE[0]
    fragments = [message[i : i + fragment].ljust(fragment, "9") for i in range(0, len(message), fragment)]
    last = len(fragments) - 1
    padded_tag = tag.ljust(27, "9")
    head = int_trytes(0, 27)  # value
    tail_tag = tryte_int(padded_tag)
    stamp = int_trytes(timestamp_s, 9)

    def essence(index: int, obsolete_tag: str) -> str:
        return head + obsolete_tag + stamp + int_trytes(index, 9) + int_trytes(last, 9)

    # only the tail's obsoleteTag changes between tries: every other chunk is converted once
    rest = [_kerl_chunk(part) for i in range(1, last + 1) for part in (address, essence(i, padded_tag))]
    address_chunk = _kerl_chunk(address)
    while True:
        obsolete_tag = int_trytes(tail_tag, 27)
        bundle = kerl([address_chunk, _kerl_chunk(essence(0, obsolete_tag)), *rest])
        if not _insecure(bundle):
            break
        tail_tag += 1
    out = []
    for i, body in enumerate(fragments):
        out.append(body + address + essence(i, obsolete_tag if i == 0 else padded_tag) + bundle + NULL_HASH
                   + NULL_HASH + padded_tag + "9" * (NONCE[1] - ATTACHMENT_TIMESTAMP[0]))
    out.reverse()
    return out


def check_bundle(chain: list[Transaction]) -> str | None:
    """Why the transactions (tail first, as walked by trunk) are not one consistent bundle; None when they are.

    Checks IRI's BundleValidator rules that apply to a zero-value tangle: indices 0..lastIndex in order, one
    lastIndex and one bundle hash for all, values summing to zero, and the Kerl bundle hash. Signatures are not
    checked because zero-value transactions carry none (this node refuses value transactions outright).
    """
    if not chain:
        return "empty bundle"
    last = chain[0].last_index
    for i, tx in enumerate(chain):
        if tx.bundle != chain[0].bundle:
            return f"transaction {tx.hash} belongs to another bundle"
        if tx.current_index != i:
            return f"transaction {tx.hash} has currentIndex {tx.current_index}, expected {i}"
        if tx.last_index != last:
            return f"transaction {tx.hash} has lastIndex {tx.last_index}, expected {last}"
    if len(chain) != last + 1:
        return f"bundle has {len(chain)} transactions but lastIndex {last}"
    if sum(tx.value for tx in chain) != 0:
        return "bundle values do not sum to zero"
    if bundle_hash(chain) != chain[0].bundle:
        return "bundle hash does not match the Kerl hash of the transactions' essence"
    return None
