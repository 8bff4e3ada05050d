"""The WAL settings every SQLite file SCB writes shares: the hub database (scb.db) and the tangle node's store.

Why a module of its own: the tangle node writes its file with plain `sqlite3` and must not import scb.db, whose
SQLAlchemy costs a process about 25 MB of resident memory (issue 16).
"""
from __future__ import annotations

#: Pages in the WAL before a commit copies them into the database file (SQLite's default: 1,000). Why more: a
#: page that several commits change between two checkpoints reaches the file once. A sample of 1,000 meters changes
#: thousands of the hub's index pages, so at the default nearly every sample was checkpointed on its own
#: (benchmarks/sample_writes.py measured 12.6 -> 8.8 kB written per reading); the node's random-hash indexes and
#: its pruning change the same pages from bundle to bundle (benchmarks/node_writes.py: 38.3 -> 33.1 kB per
#: transaction). Durability is the WAL's, unchanged; the cost is a WAL of up to ~40 MB (4 KB pages) per file on disk.
WAL_AUTOCHECKPOINT_PAGES = 10_000
