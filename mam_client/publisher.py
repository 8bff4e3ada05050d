"""The publisher: drains the outbox to the tangle, in order per channel, without ever re-signing.

Per channel, each cycle:
1. **prepare** queued messages, oldest first: in ONE database transaction the payload is computed, the channel
   state advanced and the row marked `prepared`. A crash before the commit leaves nothing; after it, the row is
   only ever re-sent. So no index is signed twice and the nextRoot chain has no gap.
2. **attach** the oldest prepared message. The attempt is counted in the database before the node is called, so
   after a crash the publisher knows it may already be on the tangle and first looks for it there (adopting the
   bundle it finds) instead of attaching a duplicate.
3. while the node is unavailable (`TransportError`), back off exponentially with jitter (per channel) and keep
   order: message n+1 is not attached before message n.
4. when the node refuses the message (`Refused`: HTTP 4xx, its reason recorded on the row), the message keeps
   blocking its channel - the nextRoot chain cannot skip it - and is tried again on a slow schedule
   (`REFUSED_RETRY_INITIAL_S` doubling to `REFUSED_RETRY_MAX_S`), which survives restarts because it is in the
   database. `mam_client.outbox.blocked_channels` shows it to `scb status` and the dashboard.

The loop runs under `scb.loop.Guard` ("publisher"): a database that is locked, full or failing makes the step
fail, and the Guard retries it in place with backoff; every write here is one transaction that either happened
or did not, and an attempt is counted before the node is called, so a retried step never signs or attaches
twice. Any other error is a bug: the Guard logs it and exits the process (70), the supervisor restarts it.

Every attached row keeps its payload, root, address and bundle trytes: the hub's archive, because nodes prune.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.channels import channel_state, ensure_channel, load_secrets
from mam_client.mam import create_message
from mam_client.models import ATTACHED, PREPARED, QUEUED, Channel, OutboxMessage, utcnow
from mam_client.settings import MamSettings
from mam_client.transport import FoundBundle, TangleTransport
from scb.db import transaction
from scb.errors import Refused, TransportError
from scb.loop import Guard, Heartbeat, default_on_fatal
from scb.retry import Backoff, jittered
from scb.timefmt import as_utc

log = logging.getLogger(__name__)

#: Messages prepared per channel per cycle. Why a bound: each prepare is its own short transaction, and a long
#: backlog (the node was down for a day) should not keep the energy manager waiting for the write lock.
PREPARE_BATCH = 20
#: The publisher's loop in the "mam-client" heartbeat.
LOOP_NAME = "publisher"
#: Slow schedule for a message the node refused: first retry after a minute, doubling to one hour. Why: a
#: refusal (wrong minimum weight magnitude, attachToTangle switched off, a transaction the node does not
#: accept) is fixed by an operator or by the node's operator, not by asking again; asking every second would
#: only fill the node's log and ours. A minute is soon enough to notice a fix made at once; an hour bounds how
#: long a fix made later waits before the channel moves again (restarting `scb mam-client` does not skip it:
#: the schedule is in the database).
REFUSED_RETRY_INITIAL_S = 60.0
REFUSED_RETRY_MAX_S = 3600.0
#: Longest reason or error kept on a row (the node's message can echo a request).
MAX_ERROR_CHARS = 2000


class Publisher:
    def __init__(self, factory: sessionmaker[Session], settings: MamSettings, transport: TangleTransport,
                 tag: str = "SCB", clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], datetime] = utcnow,
                 refused_retry_s: tuple[float, float] = (REFUSED_RETRY_INITIAL_S, REFUSED_RETRY_MAX_S)) -> None:
        self.factory = factory
        self.settings = settings
        self.transport = transport
        self.tag = tag
        self.clock = clock  # monotonic: the per-channel outage backoff (in memory)
        self.wallclock = wallclock  # UTC: refusals and their slow retries (in the database)
        self.refused_retry_s = refused_retry_s
        self._secrets: dict[str, tuple[str, str | None]] = {}
        self.backoff = {name: jittered(settings.backoff_initial_s, settings.backoff_max_s)
                        for name in settings.channels}
        #: the outcome of the last node call: True (answered, even with a refusal), False (unavailable), None
        #: (no call yet); shown as the heartbeat's `node_reachable`
        self.node_reachable: bool | None = None
        self.heartbeat: Heartbeat | None = None
        #: set by run_forever: a cycle stops between messages once it is set. Why: a backlog (the node was down)
        #: is drained within one cycle, and SIGTERM must not wait for all of it (the service gives the worker 60 s)
        self.stop: threading.Event | None = None

    def ensure_channels(self) -> None:
        """Create missing channels and read every channel's seed and side key once (not on every poll)."""
        for channel in self.settings.channels.values():
            with transaction(self.factory) as session:
                ensure_channel(session, channel)
            self._secrets[channel.name] = load_secrets(channel)

    # -- prepare (write-ahead) -------------------------------------------------------------------------------
    def prepare_one(self, name: str) -> OutboxMessage | None:
        seed, side_key = self._secrets[name]  # KeyError: ensure_channels() did not run first
        with transaction(self.factory) as session:
            row = session.scalars(
                select(OutboxMessage).where(OutboxMessage.channel == name, OutboxMessage.state == QUEUED)
                .order_by(OutboxMessage.id).limit(1)
            ).first()
            if row is None:
                return None
            channel = session.get(Channel, name)
            assert channel is not None, "ensure_channels() created it"
            state = channel_state(channel, seed, side_key)
            key_index = state.key_index
            created = create_message(state, row.message)
            row.key_index = key_index
            row.payload, row.root, row.address, row.next_root = (created.payload, created.root, created.address,
                                                                  created.next_root)
            row.state = PREPARED
            row.prepared_at = utcnow()
            channel.state_json = json.dumps(state.to_json(include_secrets=False))
            return row

    # -- attach ----------------------------------------------------------------------------------------------
    def _oldest_prepared(self, name: str) -> OutboxMessage | None:
        with self.factory() as session:
            return session.scalars(
                select(OutboxMessage).where(OutboxMessage.channel == name, OutboxMessage.state == PREPARED)
                .order_by(OutboxMessage.id).limit(1)
            ).first()

    def _mark_attached(self, row_id: int, bundle: FoundBundle) -> None:
        with transaction(self.factory) as session:
            row = session.get(OutboxMessage, row_id)
            assert row is not None
            row.state = ATTACHED
            row.bundle_hash = bundle.bundle_hash
            row.tx_hashes = json.dumps(list(bundle.tx_hashes))
            row.bundle_trytes = json.dumps(list(bundle.trytes))
            row.attached_at = utcnow()
            row.last_error = None
            row.refusal, row.refused_at, row.refusals, row.retry_at = None, None, 0, None

    @contextmanager
    def _node_call(self) -> Iterator[None]:
        """Around every node call: remember whether the node answered (`node_reachable`)."""
        try:
            yield
        except Refused:
            self.node_reachable = True  # it answered, with a no
            raise
        except TransportError:
            self.node_reachable = False
            raise
        self.node_reachable = True

    def attach_one(self, name: str) -> bool:
        """Attach the oldest prepared message of `name`; False when there is none or it waits for its slow
        retry after a refusal. Raises TransportError (node unavailable) and Refused (recorded on the row)."""
        row = self._oldest_prepared(name)
        if row is None:
            return False
        if row.retry_at is not None and as_utc(row.retry_at) > self.wallclock():
            return False  # refused: the channel waits for the slow retry (nothing after it may pass)
        assert row.address and row.payload
        try:
            if row.attempts:
                # An earlier attempt may have reached the node before a crash or a lost answer: adopt it.
                with self._node_call():
                    found = self.transport.find_bundles(row.address)
                for bundle in found:
                    if bundle.carries(row.payload):
                        log.info("message %s of %s was already on the tangle; adopted bundle %s", row.id, name,
                                 bundle.bundle_hash)
                        self._mark_attached(row.id, bundle)
                        return True
            with transaction(self.factory) as session:
                fresh = session.get(OutboxMessage, row.id)
                assert fresh is not None
                fresh.attempts += 1
            with self._node_call():
                bundle = self.transport.attach(row.address, row.payload, self.tag)
        except Refused as exc:
            self._record_refusal(row.id, name, str(exc))
            raise
        self._mark_attached(row.id, bundle)
        if row.refusal:
            log.info("message %s of %s, refused since %s, is attached now; the channel moves again", row.id, name,
                     row.refused_at)
        log.info("attached message %s of %s at %s (bundle %s)", row.id, name, row.address, bundle.bundle_hash)
        return True

    def _record_refusal(self, row_id: int, name: str, reason: str) -> None:
        """The node's reason on the row, and its next try on the slow schedule (doubling per refusal)."""
        now = self.wallclock()
        with transaction(self.factory) as session:
            row = session.get(OutboxMessage, row_id)
            assert row is not None
            schedule = Backoff(*self.refused_retry_s, failures=row.refusals)
            delay = schedule.fail(0.0)
            row.refusals = schedule.failures
            row.refusal = reason[:MAX_ERROR_CHARS]
            row.refused_at = row.refused_at or now
            row.retry_at = now + timedelta(seconds=delay)
        log.warning("channel %s is blocked: the node refused message %s (%d time(s)): %s; next try in %.0f s",
                    name, row_id, schedule.failures, reason, delay)

    def _record_error(self, name: str, error: str) -> None:
        with transaction(self.factory) as session:
            row = session.scalars(
                select(OutboxMessage).where(OutboxMessage.channel == name, OutboxMessage.state == PREPARED)
                .order_by(OutboxMessage.id).limit(1)
            ).first()
            if row is not None:
                row.last_error = error[:MAX_ERROR_CHARS]

    # -- the loop --------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """One cycle over all channels; returns how many messages were attached.

        Handles what the node does (per channel: outage backoff, refusal schedule); database errors and bugs
        propagate to the caller (the Guard of `run_forever`)."""
        attached = 0
        for name in self.settings.channels:
            for _ in range(PREPARE_BATCH):
                if self.prepare_one(name) is None:
                    break
            backoff = self.backoff[name]
            if self.clock() < backoff.not_before:
                continue
            try:
                while not self._stopping() and self.attach_one(name):
                    attached += 1
                    backoff.succeed()
            except Refused:
                backoff.succeed()  # the node answered; the refusal's own slow schedule is on the row
            except TransportError as exc:
                delay = backoff.fail(self.clock(), str(exc))
                log.warning("channel %s: %s; retrying in %.1f s", name, exc, delay)
                self._record_error(name, str(exc))
        return attached

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def step(self) -> float | None:
        """One Guard step: a cycle, then the heartbeat's detail. 0 (go on at once) after progress, since more
        may be waiting than one cycle prepares; otherwise None (the poll interval)."""
        attached = self.run_once()
        if self.heartbeat is not None:
            self.heartbeat.beat(LOOP_NAME, detail={"node_reachable": self.node_reachable})
        return 0.0 if attached else None

    def run_forever(self, stop: threading.Event, heartbeat: Heartbeat,
                    on_fatal: Callable[[str, BaseException], None] = default_on_fatal,
                    backoff: Backoff | None = None) -> None:
        """Cycle under the failure policy (`scb.loop.Guard`) until `stop` is set. ensure_channels() must have
        run (the service runs it first, so that a channel error stops the process at start).

        `on_fatal` and `backoff` (the Guard's, for database errors) are for tests."""
        self.heartbeat = heartbeat
        self.stop = stop
        guard = Guard(LOOP_NAME, heartbeat, self.settings.poll_interval_s, on_fatal=on_fatal)
        if backoff is not None:
            guard.backoff = backoff
        guard.run(self.step, stop)
