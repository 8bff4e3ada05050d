"""Log scans that hosted RPC providers accept: from the contract's deployment block, in chunks, resumable.

Why: `eth_getLogs` from block 0 to the head in one request is what a local anvil answers and what every hosted
provider refuses (Alchemy, Infura, QuickNode, Ankr... limit a request to 1,000-10,000 blocks or 10,000 results,
and answer with an error naming the range). So every scan (`scb verify`, supply decisions, reconciliation) goes
through `scan`:

- it starts no earlier than the contract's **deployment block** (nothing of the contract's can be older), found
  once per contract by a binary search over `eth_getCode` at past blocks and kept (`DeploymentBlocks`: in memory,
  and in the hub's `settlement_state` when the service gave the client a database);
- it asks for `log_chunk_blocks` blocks at a time (`[ethereum] log_chunk_blocks`, default 2,000), **halving** the
  chunk whenever the provider refuses a range (`RangeRefused`), down to one block; the size that worked is kept
  for the next scans of the same client;
- a scan that fails half-way (the provider unreachable, rate limits beyond `rate_limit_wait_s`) keeps what it
  scanned: the next scan with the same start **resumes** from the last block scanned instead of starting over.

Rate limits (HTTP 429, JSON-RPC "limit exceeded") are backed off per request by the client itself
(settlement.chain), so a scan through a throttled provider is slow but completes.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scb.errors import ChainUnavailable

log = logging.getLogger("settlement.logscan")

#: how the providers say a range (not the request rate) is too much; matched in lower case
_RANGE_WORDS = ("range", "results", "response size", "too large", "too wide", "too many blocks", "block limit",
                "exceed max", "10000", "10,000")


class RangeRefused(ChainUnavailable):
    """The provider refused a log query for its range (too many blocks or results): ask for a smaller one."""


def is_range_refusal(message: str) -> bool:
    text = message.lower()
    return any(word in text for word in _RANGE_WORDS)


@dataclass
class _Partial:
    scanned_to: int
    logs: list[Any]


@dataclass
class LogScanner:
    """The chunk size that works and the scans left half-done, for one client."""

    chunk: int
    partial: dict[tuple[Any, ...], _Partial] = field(default_factory=dict)

    def scan(self, key: tuple[Any, ...], fetch: Callable[[int, int], list[Any]], start: int, end: int) -> list[Any]:
        """Logs of blocks `start`..`end` (inclusive) by `fetch(from, to)` in chunks; `key` names the query (contract,
        event, filters) so a failed scan resumes."""
        if end < start:
            return []
        done = self.partial.pop((*key, start), None)
        logs: list[Any] = list(done.logs) if done is not None and done.scanned_to < end else []
        pos = done.scanned_to + 1 if done is not None and done.scanned_to < end else start
        if done is not None and pos > start:
            log.info("log scan resumes at block %d (blocks %d..%d were scanned before)", pos, start, pos - 1)
        while pos <= end:
            hi = min(end, pos + self.chunk - 1)
            try:
                got = fetch(pos, hi)
            except RangeRefused as exc:
                if self.chunk == 1:
                    raise
                self.chunk = max(1, self.chunk // 2)
                log.info("the provider refused logs of blocks %d..%d (%s): chunks of %d blocks from now on", pos, hi,
                         exc, self.chunk)
                continue
            except Exception:
                if pos > start:  # keep what was scanned: the next identical scan goes on from here
                    self.partial[(*key, start)] = _Partial(pos - 1, logs)
                raise
            logs.extend(got)
            pos = hi + 1
        return logs


class DeploymentStore:
    """Where deployment blocks are kept beyond the process: `settlement_state` of the hub's database."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory

    @staticmethod
    def key(chain_id: int, address: str) -> str:
        return f"deployment:{chain_id}:{address.lower()}"

    def load(self, chain_id: int, address: str) -> int | None:
        from settlement.models import SettlementState
        from scb.db import load_json_value

        with self.factory() as session:
            value = load_json_value(session, SettlementState, self.key(chain_id, address))
        if isinstance(value, dict) and isinstance(value.get("block"), int):
            return int(value["block"])
        return None

    def save(self, chain_id: int, address: str, block: int, tx_hash: str | None = None) -> None:
        from settlement.models import SettlementState
        from scb.db import save_json_value, transaction

        with transaction(self.factory) as session:
            save_json_value(session, SettlementState, self.key(chain_id, address),
                            {"block": int(block), "tx": tx_hash})


def find_deployment_block(has_code_at: Callable[[int], bool], head: int) -> int:
    """The first block at which the contract has code: a binary search (about log2(head) eth_getCode calls).
    Raises what `has_code_at` raises (a node without the historical state refuses old blocks)."""
    if not has_code_at(head):
        return head  # not deployed (yet): nothing of it can be older than the head
    lo, hi = 0, head
    while lo < hi:
        mid = (lo + hi) // 2
        if has_code_at(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
