"""Reading bundles from a legacy IOTA node with plain JSON over HTTP: what `scb verify` and fetches need.

Why not `mam_client.transport.PyotaTransport`: reading asks a node two IRI commands (`findTransactions` by
address, `getTrytes` of the hashes found), and PyOTA's import alone (pkg_resources, its filters) costs about half
a second, half of `scb verify`'s budget (issue 16). The transactions are parsed by the node's own pure module
(`mam_client.node.transaction`, our C Curl) and joined into bundles here, as `transport.assemble_bundles` does
with PyOTA's objects.

What a node's answer means is what it means to PyotaTransport (docs/mam.md "Node errors"): not reached, timed
out, HTTP 5xx, 408/429, or an answer that is not IRI's -> `NodeUnavailable`; any other 4xx -> `NodeRefused` with
the node's own reason.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mam_client.node.transaction import HASH_TRYTES, Transaction, TransactionFormatError, is_trytes, parse
from mam_client.transport import MAX_REASON_CHARS, RETRYABLE_4XX, FoundBundle
from scb.errors import NodeRefused, NodeUnavailable
from scb.jsonhttp import post_json

#: the header IRI requires of every command
API_HEADERS = {"X-IOTA-API-Version": "1"}


def _reason(data: Any, text: str) -> str:
    """The node's own words: IRI's JSON `error` (4xx) or `exception` (5xx), else the body's start."""
    if isinstance(data, dict):
        for key in ("error", "exception", "message"):
            if isinstance(data.get(key), str) and data[key].strip():
                return str(data[key]).strip()[:MAX_REASON_CHARS]
    return text.strip()[:MAX_REASON_CHARS]


def assemble(transactions: Sequence[Transaction]) -> list[FoundBundle]:
    """mam.js decodeTransactions: from each tail follow trunk links through index order to the last index;
    incomplete chains are skipped."""
    by_hash = {tx.hash: tx for tx in transactions}
    found: list[FoundBundle] = []
    for tail in transactions:
        if tail.current_index != 0:
            continue
        chain = [tail]
        while chain[-1].current_index < chain[-1].last_index:
            nxt = by_hash.get(chain[-1].trunk)
            if nxt is None or nxt.current_index != chain[-1].current_index + 1:
                break
            chain.append(nxt)
        if chain[-1].current_index != chain[-1].last_index:
            continue
        found.append(FoundBundle(bundle_hash=tail.bundle, tx_hashes=tuple(tx.hash for tx in chain),
                                 trytes=tuple(tx.trytes for tx in chain),
                                 fragments="".join(tx.trytes[:2187] for tx in chain)))
    return found


class TangleReader:
    """`find_bundles(address)` of a legacy IRI-compatible node (the read half of `TangleTransport`)."""

    def __init__(self, node_url: str, timeout_s: float = 30.0) -> None:
        self.node_url = node_url
        self.timeout_s = timeout_s

    def command(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        """One IRI command; its answer object, or NodeUnavailable / NodeRefused (see the module docstring)."""
        prefix = f"IOTA node {self.node_url}: {what}"
        answer = post_json(self.node_url, {"command": what, **body}, self.timeout_s, unreachable=NodeUnavailable,
                           peer=f"IOTA node {self.node_url} ({what})", headers=API_HEADERS)
        if 400 <= answer.status < 500 and answer.status not in RETRYABLE_4XX:
            raise NodeRefused(f"{prefix} refused (HTTP {answer.status}): {_reason(answer.data, answer.text)}")
        if answer.status >= 300:
            raise NodeUnavailable(f"{prefix} failed (HTTP {answer.status}): {_reason(answer.data, answer.text)}")
        if not isinstance(answer.data, dict):
            raise NodeUnavailable(f"{prefix} failed: malformed answer (not a JSON object)")
        return answer.data

    def find_bundles(self, address: str) -> list[FoundBundle]:
        found = self.command("findTransactions", {"addresses": [address]})
        hashes = found.get("hashes")
        if not isinstance(hashes, list) or not all(is_trytes(h, HASH_TRYTES) for h in hashes):
            raise NodeUnavailable(f"IOTA node {self.node_url}: findTransactions failed: malformed answer (hashes)")
        if not hashes:
            return []
        got = self.command("getTrytes", {"hashes": hashes}).get("trytes")
        if not isinstance(got, list):
            raise NodeUnavailable(f"IOTA node {self.node_url}: getTrytes failed: malformed answer (trytes)")
        transactions = []
        for tx_trytes, tx_hash in zip(got, hashes):
            if not isinstance(tx_trytes, str) or not tx_trytes.strip("9"):
                continue  # a transaction the node no longer has (pruned) comes back as 9s
            try:
                transactions.append(parse(tx_trytes))
            except TransactionFormatError:
                raise NodeUnavailable(f"IOTA node {self.node_url}: getTrytes failed: malformed answer "
                                      f"(transaction {tx_hash})") from None
        return assemble(transactions)
