"""The tangle as the publisher and fetcher see it: attach a payload, find the bundles at an address.

`PyotaTransport` talks to any legacy IRI-compatible node through PyOTA 2.1.0 (tips -> attachToTangle or local
proof of work -> check the bundle -> store and broadcast). Callers never see a requests or PyOTA exception;
what the node did decides what they see (`node_error`, docs/mam.md "Node errors"):

* the node could not be reached, timed out, failed on its side (HTTP 5xx), or answered something that is not an
  IRI answer (not JSON, a 200 that fails PyOTA's response validation, an inconsistent bundle): `NodeUnavailable`,
  retried with backoff;
* the node understood and said no (HTTP 4xx, e.g. 400 "Invalid minWeightMagnitude input", 401 "COMMAND
  attachToTangle is not available"): `NodeRefused` with the node's own reason, retried on a slow schedule;
* anything else is a bug on our side (e.g. PyOTA refusing the request we built) and propagates unchanged, so
  that the loop's Guard exits the process instead of retrying a bug forever.

Tests of the layers above inject their own `TangleTransport`.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mam_client.crypto.curl import hash_trits
from mam_client.crypto.trits import is_trytes, trits, trytes
from mam_client.node import transaction as tx
from scb.errors import NodeRefused, NodeUnavailable, ScbError

log = logging.getLogger(__name__)
FRAGMENT_TRYTES = 2187
HASH_TRYTES = 81
#: Client errors that mean "not now" rather than "no": 408 Request Timeout and 429 Too Many Requests (a public
#: node's rate limit). Why apart: they clear by themselves, so they are retried like an outage, not slowly.
RETRYABLE_4XX = frozenset({408, 429})
#: How much of a node's reason is kept. Why: it is shown in logs, the database and the dashboard; a node that
#: echoes a whole request back must not fill them.
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class FoundBundle:
    """A complete bundle at an address: its transactions from tail to head and their fragments joined."""

    bundle_hash: str
    tx_hashes: tuple[str, ...]
    trytes: tuple[str, ...]
    fragments: str

    def carries(self, payload: str) -> bool:
        """True if the bundle's message is exactly `payload` (fragments are right-padded with 9s)."""
        return self.fragments.startswith(payload) and not self.fragments[len(payload):].strip("9")


class TangleTransport(Protocol):
    def attach(self, address: str, payload: str, tag: str) -> FoundBundle: ...

    def find_bundles(self, address: str) -> list[FoundBundle]: ...


def parse_transaction(tryte_string: str) -> object:
    """A PyOTA `Transaction` from its trytes, hashed with our C Curl-P-81.

    Why: PyOTA's `Transaction.from_tryte_string` hashes with its pure-Python Curl when no hash is given
    (~0.2 s per transaction on a Pi-class CPU), which made reading a channel take seconds.
    """
    from iota import Transaction, TransactionHash

    tx_hash = trytes(hash_trits(trits(tryte_string), 81))
    return Transaction.from_tryte_string(tryte_string, TransactionHash(tx_hash))


def assemble_bundles(transactions: list[object]) -> list[FoundBundle]:
    """mam.js decodeTransactions: from each tail follow trunk links through index order to the last index.

    Incomplete chains are skipped. Works on PyOTA `Transaction` objects.
    """
    by_hash = {str(tx.hash): tx for tx in transactions}  # type: ignore[attr-defined]
    found: list[FoundBundle] = []
    for tail in transactions:
        if tail.current_index != 0:  # type: ignore[attr-defined]
            continue
        chain = [tail]
        while chain[-1].current_index < chain[-1].last_index:  # type: ignore[attr-defined]
            nxt = by_hash.get(str(chain[-1].trunk_transaction_hash))  # type: ignore[attr-defined]
            if nxt is None or nxt.current_index != chain[-1].current_index + 1:  # type: ignore[attr-defined]
                break
            chain.append(nxt)
        if chain[-1].current_index != chain[-1].last_index:  # type: ignore[attr-defined]
            continue
        found.append(FoundBundle(
            bundle_hash=str(tail.bundle_hash),  # type: ignore[attr-defined]
            tx_hashes=tuple(str(tx.hash) for tx in chain),  # type: ignore[attr-defined]
            trytes=tuple(str(tx.as_tryte_string()) for tx in chain),  # type: ignore[attr-defined]
            fragments="".join(str(tx.signature_message_fragment) for tx in chain),  # type: ignore[attr-defined]
        ))
    return found


def attached_bundle(attached: object, payload: str) -> FoundBundle | None:
    """The bundle of an attachToTangle answer (tail first) if it is exactly one consistent bundle, each
    transaction approving the next by trunk, that carries `payload`; else None."""
    if not isinstance(attached, list) or not attached:
        return None
    if not all(tx.is_trytes(t, tx.TRANSACTION_TRYTES) for t in attached):
        return None
    chain = [tx.parse(t) for t in attached]
    if any(a.trunk != b.hash for a, b in zip(chain, chain[1:])) or tx.check_bundle(chain) is not None:
        return None
    bundle = FoundBundle(bundle_hash=chain[0].bundle, tx_hashes=tuple(t.hash for t in chain),
                         trytes=tuple(attached), fragments="".join(tx.field(t.trytes, tx.SIGNATURE) for t in chain))
    return bundle if bundle.carries(payload) else None


@functools.cache
def _status_adapter_class() -> type:
    """PyOTA's HttpAdapter, plus the HTTP status on every `BadApiResponse` it raises.

    Why: PyOTA 2.1.0 puts the status only into the message text ("400 response from node: ..."), and the
    decoded answer into `exc.context["response"]`; the status is what tells a refusal from an outage.
    """
    from iota.adapter import BadApiResponse, HttpAdapter

    class StatusHttpAdapter(HttpAdapter):  # type: ignore[misc]
        def _interpret_response(self, response: Any, payload: dict, expected_status: Any) -> dict:
            try:
                return super()._interpret_response(response, payload, expected_status)
            except BadApiResponse as exc:
                context = getattr(exc, "context", None)
                if not isinstance(context, dict):
                    context = {}
                    exc.context = context  # type: ignore[attr-defined]
                context["status"] = response.status_code
                raise

    return StatusHttpAdapter


def _node_reason(exc: BaseException) -> str:
    """The node's own words: IRI's JSON `error` (4xx) or `exception` (5xx), else PyOTA's message."""
    context = getattr(exc, "context", None)
    answer = context.get("response") if isinstance(context, dict) else None
    if isinstance(answer, dict):
        for key in ("error", "exception", "message"):
            if isinstance(answer.get(key), str) and answer[key].strip():
                return answer[key].strip()[:MAX_REASON_CHARS]
    return str(exc).strip()[:MAX_REASON_CHARS]


def node_error(node_url: str, what: str, exc: Exception) -> ScbError | None:
    """What a failed PyOTA call means (see the module docstring), or None for a bug that must propagate."""
    import requests
    from iota.adapter import BadApiResponse

    prefix = f"IOTA node {node_url}: {what}"
    if isinstance(exc, requests.RequestException):  # connection refused or reset, DNS, timeout, TLS
        return NodeUnavailable(f"{prefix} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, BadApiResponse):
        context = getattr(exc, "context", None)
        status = context.get("status") if isinstance(context, dict) else None
        if status is None:
            # raised by PyOTA or our LocalPowAdapter about the request itself, not about an HTTP answer (e.g.
            # "local attachToTangle refused the request"): asking again gets the same answer
            return NodeRefused(f"{prefix} refused: {_node_reason(exc)}")
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            return NodeRefused(f"{prefix} refused (HTTP {status}): {_node_reason(exc)}")
        return NodeUnavailable(f"{prefix} failed (HTTP {status}): {_node_reason(exc)}")
    if isinstance(exc, ValueError) and str(exc).startswith("Response failed validation"):
        # a 200 whose body is not what IRI answers (PyOTA's response filters): a broken node or proxy
        return NodeUnavailable(f"{prefix} failed: malformed answer: {str(exc)[:MAX_REASON_CHARS]}")
    return None


def _hashes(answer: dict, node_url: str, what: str) -> list[str]:
    """The `hashes` of a findTransactions answer, checked: a node's junk must not reach PyOTA as our request
    (PyOTA would refuse it as *our* bad request, which is a bug and exits the process)."""
    hashes = answer.get("hashes")
    if not isinstance(hashes, list) or not all(is_trytes(str(h), HASH_TRYTES) for h in hashes):
        raise NodeUnavailable(f"IOTA node {node_url}: {what} failed: malformed answer (hashes)")
    return [str(h) for h in hashes]


class PyotaTransport:
    """A legacy IOTA node through PyOTA's `Iota` client.

    With `local_pow`, attachToTangle runs on this machine (`mam_client.pow.LocalPowAdapter`) and only tips,
    storage and broadcast go to the node - for nodes that refuse attachToTangle.
    """

    def __init__(self, node_url: str, depth: int = 3, mwm: int = 9, timeout_s: float = 30.0,
                 local_pow: bool = False, pow_threads: int | None = None) -> None:
        from iota import Iota

        self.node_url = node_url
        self.depth = depth
        self.mwm = mwm
        adapter = _status_adapter_class()(node_url, timeout=timeout_s)
        if local_pow:
            from mam_client.pow import LocalPowAdapter

            adapter = LocalPowAdapter(adapter, threads=pow_threads or None)
        self.api = Iota(adapter)

    def _call(self, what: str, fn: Callable[[], dict]) -> dict:
        try:
            answer = fn()
        except Exception as exc:  # noqa: BLE001 - node_error sorts it; what it does not know is re-raised
            mapped = node_error(self.node_url, what, exc)
            if mapped is None:
                raise
            raise mapped from None
        if not isinstance(answer, dict):  # pragma: no cover - PyOTA always returns the decoded JSON object
            raise NodeUnavailable(f"IOTA node {self.node_url}: {what} failed: malformed answer")
        return answer

    def _send(self, command: str, what: str | None = None, **params: object) -> dict:
        """One IRI command through the adapter (local PoW included), without PyOTA's command objects.

        Why not `self.api.<command>`: PyOTA's filters convert every transaction into its own types and back, in
        Python, on the way out and in (about 3 of the 44 s of a cProfile of the publisher, beside 32 s in its
        prepare_transfer; issue 16). The answers are checked here instead."""
        return self._call(what or command, lambda: self.api.adapter.send_request({"command": command, **params}))

    def attach(self, address: str, payload: str, tag: str) -> FoundBundle:
        """Attach `payload` at `address` as one zero-value bundle; the bundle as stored on the node.

        PyOTA's sendTrytes step by step, so that the attached bundle is checked *before* it is stored: the bundle
        (`mam_client.node.transaction.zero_value_bundle`, what PyOTA's prepareTransfer builds), tips,
        attachToTangle, then broadcast and store. An inconsistent answer (not exactly one complete bundle carrying
        `payload`) raises `NodeUnavailable`, not `NodeRefused`. Why: the node did not say no; it answered 200 with
        something else - IRI answers an interrupted attachToTangle with an empty list, and a proxy may truncate -
        which is the same kind of fault as a malformed answer. It is retried with the outage backoff (capped, so
        never a tight loop), and nothing of it was stored, so the retry cannot leave a second bundle behind.
        """
        bundle = tx.zero_value_bundle(address, payload, tag, int(time.time()))
        tips = self._send("getTransactionsToApprove", depth=self.depth)
        trunk, branch = tips.get("trunkTransaction"), tips.get("branchTransaction")
        if not (is_trytes(trunk, HASH_TRYTES) and is_trytes(branch, HASH_TRYTES)):
            raise NodeUnavailable(f"IOTA node {self.node_url}: getTransactionsToApprove failed: malformed answer")
        sent = self._send("attachToTangle", trunkTransaction=trunk, branchTransaction=branch,
                          minWeightMagnitude=self.mwm, trytes=bundle)
        attached = sent.get("trytes")
        found = attached_bundle(attached, payload)
        if found is None:
            count = len(attached) if isinstance(attached, list) else 0
            raise NodeUnavailable(f"IOTA node {self.node_url}: attachToTangle returned an inconsistent bundle "
                                  f"({count} transactions)")
        for command in ("broadcastTransactions", "storeTransactions"):  # PyOTA's broadcastAndStore
            self._send(command, "broadcastAndStore", trytes=list(found.trytes))
        return found

    def find_bundles(self, address: str) -> list[FoundBundle]:
        from iota import Address, TransactionHash

        found = self._call("findTransactions", lambda: self.api.find_transactions(addresses=[Address(address)]))
        hashes = _hashes(found, self.node_url, "findTransactions")
        if not hashes:
            return []
        got = self._call("getTrytes", lambda: self.api.get_trytes([TransactionHash(h) for h in hashes]))
        return assemble_bundles([parse_transaction(str(t)) for t in got.get("trytes") or [] if str(t).strip("9")])
