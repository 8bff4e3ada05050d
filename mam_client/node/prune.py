"""Which transactions the tangle node may prune, and the loop that prunes them (a node's local snapshot).

The rule: a transaction is pruned only once the hub has *archived* its bundle, i.e. the hub's `mam_messages` row
of that message is `attached` and holds the bundle (`tx_hashes`, and its trytes in `mam_message_bodies`, written
in the same transaction: mam_client.archive reads it back for `scb mam fetch`, `scb verify` and the dashboard), at
least `prune_after_s` ago; and, when something
else still needs the node's copy (the fleet upload, while `[fleet] url` is set), only messages at or below the
*hold* it gives. Transactions of any other origin (another client's junk, a message the hub never recorded) are
never pruned.

Why the hold is an injected callable rather than a query of `fleet_upload_cursors` here: the cursor belongs to
the application layer (hub.fleet), which a component must not import (docs/architecture.md "Layers"). So the
node takes `holds` from whoever composes the process; while `[fleet] url` is set and no hold was given, it prunes
nothing at all, because pruning what the fleet has not received yet could not be undone.

How it reads the hub's database: with plain sqlite3 (read-only URI, `SqliteMessages`) when the hub is on SQLite
and no hold is given, else through SQLAlchemy (a hold is a query on a SQLAlchemy session; PostgreSQL has no
file). Why: SQLAlchemy and the models cost the node process about 16 MB of resident memory for one SELECT a
pass (issue 16); the two readers return the same rows (tests/mam_client/node/test_prune.py runs both).

Progress is kept in the node's own store (meta `pruned_through_message`): each pass reads the hub's messages past
it in id order, so a pass costs what is new, not the whole history.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from mam_client.node.store import Store
from scb.timefmt import as_utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("mam_client.node")

#: meta key of the store: the newest hub message id whose transactions were offered to `Store.prune`
CURSOR_KEY = "pruned_through_message"
#: Most messages per pass. Why: one pass is one SQLite write transaction of the node, which holds up
#: storeTransactions while it runs; a backlog (pruning switched on for an old tangle) is worked off in steps.
BATCH_MESSAGES = 200

#: A hold: the newest hub message id that may be pruned (None: nothing is held back by this consumer).
Hold = Callable[["Session"], "int | None"]
#: the state of an archived message (mam_client.models.ATTACHED: not imported, it would bring SQLAlchemy in)
ATTACHED = "attached"
#: one hub message as a pass reads it: (id, state, attached_at, tx_hashes)
Row = tuple[int, str, "datetime | None", "str | None"]


class SqliteMessages:
    """The hub's `mam_messages` read with plain sqlite3 from its file, read-only (scb.sqlite_reader)."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        from scb.sqlite_reader import connect_read_only

        self.db: sqlite3.Connection = connect_read_only(path, busy_timeout_ms)

    def rows(self, after: int, count: int) -> list[Row]:
        found = self.db.execute("SELECT id, state, attached_at, tx_hashes FROM mam_messages WHERE id > ? "
                                "ORDER BY id LIMIT ?", (after, count)).fetchall()
        # SQLAlchemy's SQLite DateTime stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, without a zone
        return [(int(i), str(st), datetime.fromisoformat(at) if at else None, tx) for i, st, at, tx in found]


#: what Pruner.hub opens: a SQLAlchemy session factory or the plain sqlite3 reader
HubReader = Union["sessionmaker[Session]", SqliteMessages]


@dataclass(frozen=True)
class PassResult:
    messages: int
    pruned: int
    #: True when more archived messages wait past this batch
    more: bool


@dataclass
class Pruner:
    """One pass at a time over the hub's archived messages; `holds` as described in the module docstring."""

    store: Store
    #: opens the hub's database (read-only), or None while there is none yet (the node starts before the hub's
    #: first process creates it); called again on each pass until it answers
    hub: Callable[[], "HubReader | None"]
    prune_after_s: float
    holds: Sequence[Hold] = ()
    #: True when a consumer needs the node's copy but gave no hold (then nothing is pruned)
    held_back: bool = False
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _factory: "HubReader | None" = None

    def _session_rows(self, factory: "sessionmaker[Session]", after: int) -> list[Any]:
        from sqlalchemy import select

        from mam_client.models import OutboxMessage

        with factory() as session:
            limit: int | None = None
            for hold in self.holds:
                held = hold(session)
                if held is not None:
                    limit = held if limit is None else min(limit, held)
            query = select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.attached_at,
                           OutboxMessage.tx_hashes).where(OutboxMessage.id > after)
            if limit is not None:
                query = query.where(OutboxMessage.id <= limit)
            return list(session.execute(query.order_by(OutboxMessage.id).limit(BATCH_MESSAGES + 1)).all())

    def run_pass(self) -> PassResult:
        if self.held_back or self.prune_after_s <= 0:
            return PassResult(0, 0, False)
        if self._factory is None:
            self._factory = self.hub()
            if self._factory is None:
                return PassResult(0, 0, False)
        after = int(self.store.get_meta(CURSOR_KEY) or 0)
        cutoff = self.now() - timedelta(seconds=self.prune_after_s)
        if isinstance(self._factory, SqliteMessages):
            if self.holds:  # a hold needs a session: pruner_factory never pairs them; refuse rather than ignore
                raise TypeError("holds need a SQLAlchemy session factory, not SqliteMessages")
            rows = self._factory.rows(after, BATCH_MESSAGES + 1)
        else:
            rows = self._session_rows(self._factory, after)
        more = len(rows) > BATCH_MESSAGES
        hashes: list[str] = []
        through = after
        done = 0
        for msg_id, state, attached_at, tx_hashes in rows[:BATCH_MESSAGES]:
            # in id order: stop at the first message not archived long enough (the cursor must not pass it)
            if state != ATTACHED or attached_at is None or as_utc(attached_at) > cutoff or not tx_hashes:
                more = False
                break
            hashes.extend(str(h) for h in json.loads(tx_hashes))
            through = msg_id
            done += 1
        if through == after:
            return PassResult(0, 0, False)
        pruned = self.store.prune(hashes)
        self.store.set_meta(CURSOR_KEY, str(through))
        if pruned:
            log.info("pruned %d transactions of %d archived messages (through message %d)", pruned, done, through)
        return PassResult(done, pruned, more)
