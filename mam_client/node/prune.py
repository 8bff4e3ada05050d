"""Which transactions the tangle node may prune, and the loop that prunes them (a node's local snapshot).

The rule: a transaction is pruned only once the hub has *archived* its bundle, i.e. the hub's `mam_messages` row
of that message is `attached` and holds the bundle (`tx_hashes`, `bundle_trytes`: mam_client.archive reads it
back for `scb mam fetch`, `scb verify` and the dashboard), at least `prune_after_s` ago; and, when something
else still needs the node's copy (the fleet upload, while `[fleet] url` is set), only messages at or below the
*hold* it gives. Transactions of any other origin (another client's junk, a message the hub never recorded) are
never pruned.

Why the hold is an injected callable rather than a query of `fleet_upload_cursors` here: the cursor belongs to
the application layer (hub.fleet), which a component must not import (docs/architecture.md "Layers"). So the
node takes `holds` from whoever composes the process; while `[fleet] url` is set and no hold was given, it prunes
nothing at all, because pruning what the fleet has not received yet could not be undone.

Progress is kept in the node's own store (meta `pruned_through_message`): each pass reads the hub's messages past
it in id order, so a pass costs what is new, not the whole history.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.models import ATTACHED, OutboxMessage
from mam_client.node.store import Store
from scb.timefmt import as_utc

log = logging.getLogger("mam_client.node")

#: meta key of the store: the newest hub message id whose transactions were offered to `Store.prune`
CURSOR_KEY = "pruned_through_message"
#: Most messages per pass. Why: one pass is one SQLite write transaction of the node, which holds up
#: storeTransactions while it runs; a backlog (pruning switched on for an old tangle) is worked off in steps.
BATCH_MESSAGES = 200

#: A hold: the newest hub message id that may be pruned (None: nothing is held back by this consumer).
Hold = Callable[[Session], int | None]


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
    hub: Callable[[], sessionmaker[Session] | None]
    prune_after_s: float
    holds: Sequence[Hold] = ()
    #: True when a consumer needs the node's copy but gave no hold (then nothing is pruned)
    held_back: bool = False
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _factory: sessionmaker[Session] | None = None

    def run_pass(self) -> PassResult:
        if self.held_back or self.prune_after_s <= 0:
            return PassResult(0, 0, False)
        if self._factory is None:
            self._factory = self.hub()
            if self._factory is None:
                return PassResult(0, 0, False)
        after = int(self.store.get_meta(CURSOR_KEY) or 0)
        cutoff = self.now() - timedelta(seconds=self.prune_after_s)
        with self._factory() as session:
            limit: int | None = None
            for hold in self.holds:
                held = hold(session)
                if held is not None:
                    limit = held if limit is None else min(limit, held)
            query = select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.attached_at,
                           OutboxMessage.tx_hashes).where(OutboxMessage.id > after)
            if limit is not None:
                query = query.where(OutboxMessage.id <= limit)
            rows = session.execute(query.order_by(OutboxMessage.id).limit(BATCH_MESSAGES + 1)).all()
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
