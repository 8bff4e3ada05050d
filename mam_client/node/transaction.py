"""The legacy IOTA transaction: its 2673-tryte layout, its hash and its bundle essence (pure, no I/O).

Both the tangle node (validation, indexing) and local proof of work (`mam_client.pow`, which writes trunk,
branch, tag and timestamps before searching a nonce) need the field offsets, so they live here once. Parsing is
done on tryte slices and our C Curl rather than PyOTA's `Transaction.from_tryte_string`, whose pure-Python
Curl-P-81 costs ~140 ms per transaction hash (SPEC §10) against ~1.5 ms here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from iota.crypto.kerl import Kerl

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
    def essence_trits(self) -> list[int]:
        return T.values(T.trits(field(self.trytes, ESSENCE)))

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


def bundle_hash(transactions: list[Transaction]) -> str:
    """Kerl over the essences of a bundle's transactions in index order (what `bundle` must equal)."""
    kerl = Kerl()
    for tx in transactions:
        kerl.absorb(tx.essence_trits)
    out = [0] * 243
    kerl.squeeze(out)
    return T.trytes(T.from_values(out))


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
