"""Helpers for the tangle node tests: raw IRI calls and bundles built with PyOTA (the reference builder)."""
from __future__ import annotations

import json
from typing import Any

import requests
from iota import Address, ProposedBundle, ProposedTransaction, Tag, TryteString

from mam_client import pow as local_pow
from mam_client.node import transaction as tx

HEADERS = {"Content-Type": "application/json", "X-IOTA-API-Version": "1"}


def call(url: str, payload: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, Any]:
    """One HTTP request to the node; returns (status, decoded JSON). Fails the test if the body is not JSON."""
    data = raw if raw is not None else json.dumps(payload).encode()
    response = requests.request(method, url, data=data, headers=HEADERS if headers is None else headers, timeout=60)
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text[:200]
    return response.status_code, response.json()


def ok(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    status, body = call(url, payload)
    assert status == 200, body
    return body


def prepared_bundle(address: str = "SCB" * 27, message: str = "HELLO", tag: str = "SCBTEST") -> list[str]:
    """Zero-value bundle trytes head first (as prepareTransfers gives them), before attachment.

    A message longer than 2187 trytes spreads over several transactions.
    """
    bundle = ProposedBundle()
    bundle.add_transaction(ProposedTransaction(
        address=Address(address.encode()), value=0, tag=Tag(tag.encode()), message=TryteString(message.encode()),
    ))
    bundle.finalize()
    return [str(t) for t in bundle.as_tryte_strings()]


def attached_bundle(mwm: int, trunk: str = tx.NULL_HASH, branch: str = tx.NULL_HASH, **kwargs: Any) -> list[str]:
    """An attached bundle, tail first, built locally (PoW by mam_client.pow)."""
    return local_pow.attach_trytes(prepared_bundle(**kwargs), trunk, branch, mwm, threads=1)


def reattach(trytes_tail_first: list[str], mwm: int, trunk: str, branch: str) -> list[str]:
    """Attach the same bundle again (new trunk/branch), as a client's replay would."""
    return local_pow.attach_trytes(list(reversed(trytes_tail_first)), trunk, branch, mwm, threads=1)
