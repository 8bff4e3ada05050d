"""Reading a channel back (like mam.js mamFetch / mamFetchAll), robust where the reference is not.

Differences from mam.js 1.0.0-beta.10, on purpose:
* a junk or forged bundle at a channel's address is skipped and reported instead of aborting the read
  (SPEC §11 item 12: one junk bundle would otherwise block every reader of the channel);
* every valid message at an address is returned (a tree with count > 1 puts several on one address);
* when the node no longer has a message (nodes prune) or cannot be reached, the hub's own archive is read and
  the result says so.

A node that refuses the query (`NodeRefused`, e.g. findTransactions switched off) is, for a reader, a node it
cannot read from: the archive is read, and without it `NodeUnavailable` is raised with the node's reason. Why not
the refusal itself: a reader has no slow schedule to wait on; its callers (`scb mam fetch`, `scb verify`, the
dashboard) answer "cannot check now" either way.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from mam_client.mam import InvalidMessage, decode_address, parse_message
from mam_client.transport import FoundBundle
from scb.errors import NodeUnavailable, Refused, TransportError

#: Longest chain `--all` walks. Why: a reader must terminate even on a channel that (by accident or malice)
#: loops back to an earlier root.
MAX_CHAIN = 100_000


@dataclass(frozen=True)
class FetchedMessage:
    root: str
    address: str
    message: str
    next_root: str
    source: str  # "node" or "archive"
    bundle_hash: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"root": self.root, "address": self.address, "message": self.message, "nextRoot": self.next_root,
                "source": self.source, "bundle": self.bundle_hash}


@dataclass(frozen=True)
class Skipped:
    address: str
    bundle_hash: str | None
    reason: str


Archive = Callable[[str], list[str]]  # address -> archived payloads


class BundleSource(Protocol):
    """What a reader needs of a node: the complete bundles at an address. `mam_client.transport`'s
    TangleTransport is one; `mam_client.tangle_reader.TangleReader` (no PyOTA) is the one `scb verify` uses."""

    def find_bundles(self, address: str) -> list[FoundBundle]: ...


def fetch_at(transport: BundleSource | None, root: str, mode: str, side_key: str | None,
             archive: Archive | None = None) -> tuple[list[FetchedMessage], list[Skipped]]:
    """All valid messages signed under `root`, and the bundles at its address that were skipped."""
    address = decode_address(root, mode)
    found: list[FetchedMessage] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    node_error: TransportError | Refused | None = None
    bundles = []
    if transport is not None:
        try:
            bundles = transport.find_bundles(address)
        except (TransportError, Refused) as exc:
            node_error = exc
    for bundle in bundles:
        try:
            parsed = parse_message(bundle.fragments, root, side_key)
        except InvalidMessage as exc:
            skipped.append(Skipped(address, bundle.bundle_hash, str(exc)))
            continue
        key = parsed.message + parsed.next_root
        if key not in seen:
            seen.add(key)
            found.append(FetchedMessage(root, address, parsed.message, parsed.next_root, "node", bundle.bundle_hash))
    if not found and archive is not None:
        for payload in archive(address):
            try:
                parsed = parse_message(payload, root, side_key)
            except InvalidMessage as exc:
                skipped.append(Skipped(address, None, f"archived payload: {exc}"))
                continue
            key = parsed.message + parsed.next_root
            if key not in seen:
                seen.add(key)
                found.append(FetchedMessage(root, address, parsed.message, parsed.next_root, "archive", None))
    if not found and node_error is not None:
        raise NodeUnavailable(f"{node_error} (and the local archive has no message at {address})")
    return found, skipped


def fetch_chain(transport: BundleSource | None, root: str, mode: str, side_key: str | None,
                archive: Archive | None = None, follow: bool = True,
                on_skip: Callable[[Skipped], None] | None = None,
                on_note: Callable[[str], None] | None = None) -> Iterator[FetchedMessage]:
    """Messages from `root` on, following nextRoot while `follow` (mamFetchAll), until an address is empty.

    If the node becomes unreachable after some messages were read, the walk ends there and `on_note` says that
    the channel may continue (the first message's failure still raises NodeUnavailable).
    """
    visited: set[str] = set()
    current = root
    for _ in range(MAX_CHAIN):
        if current in visited:
            return
        visited.add(current)
        try:
            found, skipped = fetch_at(transport, current, mode, side_key, archive)
        except NodeUnavailable as exc:
            if current == root:
                raise
            if on_note:
                on_note(f"stopped at root {current}: {exc}; the channel may continue beyond this point")
            return
        for item in skipped:
            if on_skip:
                on_skip(item)
        if not found:
            return
        yield from found
        if not follow:
            return
        current = found[-1].next_root
