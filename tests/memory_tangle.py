"""An in-memory tangle for tests of the layers above the transport (publisher, fetch, settlement, dashboard).

The transport itself is tested against the real node (tests/mam_client/node, test_reliability, test_fetch_cli);
this fake can do on demand what a real node does only by accident: go down, lose an answer after storing, prune.
"""
from __future__ import annotations

from mam_client.transport import FoundBundle
from scb.errors import NodeUnavailable


class MemoryTangle:
    """Bundles per address. `up = False`: unreachable; `lose_answer`: stores, then fails the call;
    `pruned` addresses have lost their bundles."""

    def __init__(self) -> None:
        self.by_address: dict[str, list[FoundBundle]] = {}
        self.up = True
        self.lose_answer = False
        self.pruned: set[str] = set()
        self.attach_calls = 0

    def attach(self, address: str, payload: str, tag: str) -> FoundBundle:
        self.attach_calls += 1
        if not self.up:
            raise NodeUnavailable("node is down")
        n = sum(len(v) for v in self.by_address.values())
        bundle = FoundBundle(bundle_hash=f"B{n}".ljust(81, "9"), tx_hashes=(f"T{n}".ljust(81, "9"),),
                             trytes=("9" * 2673,), fragments=payload + "9" * (-len(payload) % 2187))
        self.by_address.setdefault(address, []).append(bundle)
        if self.lose_answer:
            raise NodeUnavailable("connection reset after the node stored the bundle")
        return bundle

    def find_bundles(self, address: str) -> list[FoundBundle]:
        if not self.up:
            raise NodeUnavailable("node is down")
        if address in self.pruned:
            return []
        return list(self.by_address.get(address, []))
