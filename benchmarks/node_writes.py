#!/usr/bin/env python3
"""Where the tangle node's bytes go: its store replayed offline, bundle by bundle, step by step (issue 16).

    .venv/bin/python benchmarks/node_writes.py                      # 300 messages of 14 transactions
    .venv/bin/python benchmarks/node_writes.py --messages 100

Why beside benchmarks/scale.py: there the tangle node writes the most of any process (about 7 kB per reading,
some 40 kB per stored transaction), and /proc/PID/io cannot say whether the transactions' rows, their indexes or
the pruning cost it. Here one process builds MAM-sized zero-value bundles first (14 transactions, attached with
minimum weight 1: proof of work is not what is measured), then replays what the node does with them through its
own `mam_client.node.store.Store` - one `store()` per bundle, each approving the one before, and the local
snapshot's `prune()` of the bundle `--keep` messages back, as `mam_client.node.prune` does once the hub archived
it - and again with one step changed, so the difference is what that step costs. The reference is a bare insert of
the same transactions' hash and trytes, one SQLite transaction per bundle, WAL and synchronous=FULL as the node.
Figures are bytes written per transaction from /proc/self/io (pages dirtied, WAL and checkpoints).
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_stack import add_savings, io_counters, report  # noqa: E402

from mam_client import pow as local_pow  # noqa: E402
from mam_client.node import transaction as tx  # noqa: E402
from mam_client.node.store import Store  # noqa: E402

#: a MAM message of the scale run: about 31,000 trytes (energy.max_message_bytes 16000), 14 transactions
MESSAGE_TRYTES = 2187 * 13 + 500
TRYTES = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: (name, what changes)
VARIANTS: list[tuple[str, str | None]] = [
    ("node", None),
    ("without pruning", "no-prune"),
    ("with SQLite's default WAL checkpoint (1,000 pages) instead of SCB's (scb.wal.WAL_AUTOCHECKPOINT_PAGES)",
     "checkpoint"),
    ("without the trunk and branch indexes (the approver lookups)", "no-approvee-index"),
]


def bundles(count: int, seed: int) -> list[list[tx.Transaction]]:
    """`count` attached bundles, each approving the tail of the one before (tail first)."""
    rng = random.Random(seed)
    out: list[list[tx.Transaction]] = []
    parent = tx.NULL_HASH
    for i in range(count):
        message = "".join(rng.choice(TRYTES) for _ in range(MESSAGE_TRYTES))
        address = "".join(rng.choice(TRYTES) for _ in range(81))
        prepared = tx.zero_value_bundle(address, message, "SCBMAM", 1_764_000_000 + i)
        out.append([tx.parse(t) for t in local_pow.attach_trytes(prepared, parent, parent, 1, threads=1)])
        parent = out[-1][0].hash
    return out


def replay(path: Path, made: list[list[tx.Transaction]], change: str | None, keep: int) -> dict[str, Any]:
    store = Store(path)
    if change == "checkpoint":
        store.db.execute("PRAGMA wal_autocheckpoint=1000")
    if change == "no-approvee-index":
        store.db.execute("DROP INDEX tx_trunk")
        store.db.execute("DROP INDEX tx_branch")
    before = io_counters(os.getpid()).get("write_bytes", 0)
    count = 0
    for i, bundle in enumerate(made):
        store.store(bundle)
        count += len(bundle)
        if change != "no-prune" and i >= keep:
            store.prune([t.hash for t in made[i - keep]])
    store.close()  # the last connection checkpoints the WAL into the file: part of the cost
    written = io_counters(os.getpid()).get("write_bytes", 0) - before
    return {"bytes_per_transaction": round(written / count, 1), "write_bytes": written, "transactions": count}


def bare(path: Path, made: list[list[tx.Transaction]]) -> dict[str, Any]:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE transactions (hash TEXT NOT NULL, trytes TEXT NOT NULL)")
    before = io_counters(os.getpid()).get("write_bytes", 0)
    count = 0
    for bundle in made:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO transactions VALUES (?, ?)", [(t.hash, t.trytes) for t in bundle])
        db.execute("COMMIT")
        count += len(bundle)
    db.close()
    written = io_counters(os.getpid()).get("write_bytes", 0) - before
    return {"bytes_per_transaction": round(written / count, 1), "write_bytes": written, "transactions": count}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=300, help="bundles stored (default 300)")
    ap.add_argument("--keep", type=int, default=50, help="bundles kept before pruning (default 50)")
    ap.add_argument("--dir", type=Path, help="where the SQLite files go (default: a temporary directory)")
    args = ap.parse_args()
    made = bundles(args.messages, seed=1)
    root = Path(tempfile.mkdtemp(prefix="scb-node-writes-", dir=args.dir))  # removed by `report`
    result: dict[str, Any] = {"benchmark": "node_writes", "messages": args.messages, "keep": args.keep,
                              "transactions_per_message": len(made[0]), "variants": {}}
    for i, (name, change) in enumerate(VARIANTS):
        result["variants"][name] = replay(root / f"v{i}.sqlite3", made, change, args.keep)
    result["bare_insert"] = bare(root / "bare.sqlite3", made)
    add_savings(result["variants"], "node", "bytes_per_transaction", "saves_per_transaction")
    result["node_vs_bare"] = round(result["variants"]["node"]["bytes_per_transaction"]
                                   / result["bare_insert"]["bytes_per_transaction"], 2)
    return report(result, root, None)


if __name__ == "__main__":
    sys.exit(main())
