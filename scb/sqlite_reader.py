"""Plain `sqlite3` read-only access to the hub's SQLite database, for processes that only read a row or two.

Why not scb.db: importing SQLAlchemy (and the models) costs a process about 25 MB of resident memory for as
long as it lives (issue 16). The supervisor (`scb run`), which only asks whether a MAM message is attached yet,
and the tangle node's pruning pass, which only reads which transactions are archived, need none of it. A
PostgreSQL hub has no file: those callers use scb.db there (`sqlite_path` returns None).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL (query string dropped), or None for any other database (or :memory:)."""
    if not url.startswith(PREFIX) or url == PREFIX + ":memory:":
        return None
    return Path(url.removeprefix(PREFIX).split("?", 1)[0]).expanduser()


def connect_read_only(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection that cannot write (`mode=ro`: SQLite refuses any write, and never creates the file).

    Autocommit (`isolation_level=None`): each SELECT reads its own WAL snapshot and no transaction is left open,
    so the reader never holds a checkpoint back. `busy_timeout_ms`: as the writers' engines, a reader may wait
    for the WAL index while a checkpoint runs."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout_ms / 1000)
    return conn
