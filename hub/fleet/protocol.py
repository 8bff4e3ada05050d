"""The fleet's wire format, defined once for the hub (which signs batches) and the fleet server (which checks them).

A batch is a JSON object; the request body of `POST /api/v1/upload` is the envelope `{"batch": ..., "signature":
"0x..."}`. The signature is EIP-191 (`personal_sign`, "\\x19Ethereum Signed Message:\\n32" + digest) by the hub's
Ethereum account over `batch_digest(batch)`: keccak256 of the batch's canonical JSON (sorted keys, no blanks,
ASCII). Why over a digest of canonical JSON rather than the raw body: both sides compute it from
the parsed object, so a proxy that re-indents the body does not break it, and a wallet or hardware signer signs the
32 bytes as any EIP-191 message.

Pure: no I/O. Why here (hub/) and not in the server's package `fleet/`: the hub must not import a front end
(docs/architecture.md "Layers"), while the fleet server, a front end, may import the application layer.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scb.errors import DataError

if TYPE_CHECKING:
    from settlement.signing import Signer

FORMAT = "scb-fleet-batch"
VERSION = 1
KINDS = ("reading", "message", "settlement", "proof", "decision")
#: Most items one batch may carry. Why: one batch is one transaction on the fleet; a bounded batch bounds its
#: lock time, the request body (a message item carries its bundle, ~2.7 kB per transaction) and a retry's cost.
MAX_ITEMS = 5000
_HEX_SIG = re.compile(r"0x[0-9a-fA-F]{130}")
_ACCOUNT = re.compile(r"0x[0-9a-fA-F]{40}")


class BatchError(DataError):
    """A batch or envelope that is not in the fleet's wire format (answered 400; nothing stored)."""


class SignatureError(DataError):
    """An upload without a valid signature (answered 401; nothing stored)."""


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The one serialisation that is hashed: the project's canonical JSON, as readings are encoded (sorted keys,
    compact, ASCII, no NaN). (Python writes a float as its shortest round-tripping repr, so a parsed and
    re-serialised batch hashes alike; the items themselves carry integers and strings only.)"""
    from energy_manager.reading import encode_json  # a pure core; imported where used, as keccak is

    return encode_json(value)


def batch_digest(batch: Mapping[str, Any]) -> bytes:
    """keccak256 of the batch's canonical JSON: what the hub signs and the fleet records per batch."""
    from settlement.abi import keccak  # imported where used: hub.fleet.settings reads MAX_ITEMS in every process

    return keccak(canonical_json(batch))


def make_batch(hub: str, account: str, seq: int, sent_at_ms: int, items: list[dict[str, Any]],
               heartbeat: dict[str, Any] | None) -> dict[str, Any]:
    from settlement.abi import to_checksum_address

    return {"format": FORMAT, "version": VERSION, "hub": hub, "account": to_checksum_address(account), "seq": seq,
            "sent_at_ms": sent_at_ms, "items": items, "heartbeat": heartbeat}


def sign(batch: dict[str, Any], account: Signer) -> dict[str, Any]:
    """The envelope of `batch`, signed by `account` (the hub's key, settlement.signing)."""
    return {"batch": batch, "signature": "0x" + account.sign_message(batch_digest(batch)).hex()}


def check_batch(batch: Any) -> dict[str, Any]:
    """The batch's envelope fields are well formed (items are checked by the fleet as it stores them)."""
    if not isinstance(batch, dict):
        raise BatchError("batch must be a JSON object")
    if batch.get("format") != FORMAT or batch.get("version") != VERSION:
        raise BatchError(f"not an {FORMAT} version {VERSION} batch")
    if not isinstance(batch.get("hub"), str) or not 1 <= len(batch["hub"]) <= 64:
        raise BatchError("batch.hub must be the hub's id (1 to 64 characters)")
    if not isinstance(batch.get("account"), str) or not _ACCOUNT.fullmatch(batch["account"]):
        raise BatchError("batch.account must be an Ethereum address")
    for key in ("seq", "sent_at_ms"):
        if isinstance(batch.get(key), bool) or not isinstance(batch.get(key), int) or batch[key] < 0:
            raise BatchError(f"batch.{key} must be a non-negative integer")
    items = batch.get("items")
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise BatchError(f"batch.items must be a list of at most {MAX_ITEMS} items")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kind") not in KINDS:
            raise BatchError(f"batch.items[{i}] must be an object whose kind is one of {', '.join(KINDS)}")
    if batch.get("heartbeat") is not None and not isinstance(batch["heartbeat"], dict):
        raise BatchError("batch.heartbeat must be an object or null")
    return batch


@dataclass(frozen=True)
class OpenedBatch:
    batch: dict[str, Any]
    digest: bytes
    signer: str  # checksummed account that signed it (the batch's own `account`)


def open_envelope(envelope: Any) -> OpenedBatch:
    """Check an upload: its shape (BatchError), and that `batch.account` signed it (SignatureError)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    if not isinstance(envelope, dict) or "batch" not in envelope:
        raise BatchError('the body must be {"batch": ..., "signature": "0x..."}')
    signature = envelope.get("signature")
    if not isinstance(signature, str) or not _HEX_SIG.fullmatch(signature):
        raise SignatureError("the upload carries no signature (65 bytes, 0x-hex, EIP-191 over the batch digest)")
    batch = check_batch(envelope["batch"])
    digest = batch_digest(batch)
    try:
        signer = Account.recover_message(encode_defunct(primitive=digest), signature=signature)
    except Exception:  # noqa: BLE001 - eth_keys raises several types for a malformed signature
        raise SignatureError("the signature cannot be recovered (not a valid secp256k1 signature)") from None
    if signer.lower() != batch["account"].lower():
        raise SignatureError(f"the batch was not signed by its account {batch['account']}")
    from settlement.abi import to_checksum_address

    return OpenedBatch(batch, digest, to_checksum_address(signer))
