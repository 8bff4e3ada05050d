"""The tangle as the publisher and fetcher see it: attach a payload, find the bundles at an address.

`PyotaTransport` talks to any legacy IRI-compatible node through PyOTA 2.1.0 (tips -> attachToTangle or local
proof of work -> store and broadcast). Every failure to reach or use the node becomes `NodeUnavailable`
(retryable); callers never see a requests or PyOTA exception. Tests of the layers above inject their own
`TangleTransport`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mam_client.crypto.curl import hash_trits
from mam_client.crypto.trits import trits, trytes
from scb.errors import NodeUnavailable

log = logging.getLogger(__name__)
FRAGMENT_TRYTES = 2187


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


class PyotaTransport:
    """A legacy IOTA node through PyOTA's `Iota` client.

    With `local_pow`, attachToTangle runs on this machine (`mam_client.pow.LocalPowAdapter`) and only tips,
    storage and broadcast go to the node - for nodes that refuse attachToTangle.
    """

    def __init__(self, node_url: str, depth: int = 3, mwm: int = 9, timeout_s: float = 30.0,
                 local_pow: bool = False, pow_threads: int | None = None) -> None:
        from iota import Iota
        from iota.adapter import HttpAdapter

        self.node_url = node_url
        self.depth = depth
        self.mwm = mwm
        adapter = HttpAdapter(node_url, timeout=timeout_s)
        if local_pow:
            from mam_client.pow import LocalPowAdapter

            adapter = LocalPowAdapter(adapter, threads=pow_threads or None)
        self.api = Iota(adapter)

    def _call(self, what: str, fn: Callable[[], dict]) -> dict:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - requests, PyOTA BadApiResponse, JSON errors: all retryable
            raise NodeUnavailable(f"IOTA node {self.node_url}: {what} failed: {type(exc).__name__}: {exc}") from None

    def attach(self, address: str, payload: str, tag: str) -> FoundBundle:
        from iota import Address, ProposedTransaction, Tag, TryteString

        transfer = ProposedTransaction(address=Address(address), value=0, tag=Tag(tag), message=TryteString(payload))
        prepared = self._call("prepareTransfer", lambda: self.api.prepare_transfer(transfers=[transfer]))
        trytes = prepared["trytes"]
        sent = self._call("sendTrytes", lambda: self.api.send_trytes(trytes, self.depth, self.mwm))
        attached = sent["trytes"]
        txs = [parse_transaction(str(t)) for t in attached]
        bundles = assemble_bundles(txs)
        if len(bundles) != 1 or not bundles[0].carries(payload):
            raise NodeUnavailable(f"IOTA node {self.node_url}: attachToTangle returned an inconsistent bundle")
        return bundles[0]

    def find_bundles(self, address: str) -> list[FoundBundle]:
        from iota import Address

        found = self._call("findTransactions", lambda: self.api.find_transactions(addresses=[Address(address)]))
        hashes = found["hashes"]
        if not hashes:
            return []
        got = self._call("getTrytes", lambda: self.api.get_trytes(hashes))
        return assemble_bundles([parse_transaction(str(t)) for t in got["trytes"] if str(t).strip("9")])
