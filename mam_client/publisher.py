"""The publisher: drains the outbox to the tangle, in order per channel, without ever re-signing.

Per channel, each cycle:
1. **prepare** queued messages, oldest first: in ONE database transaction the payload is computed, the channel
   state advanced and the row marked `prepared`. A crash before the commit leaves nothing; after it, the row is
   only ever re-sent. So no index is signed twice and the nextRoot chain has no gap.
2. **attach** the oldest prepared message. The attempt is counted in the database before the node is called, so
   after a crash the publisher knows it may already be on the tangle and first looks for it there (adopting the
   bundle it finds) instead of attaching a duplicate.
3. while the node fails, back off exponentially with jitter (per channel) and keep order: message n+1 is not
   attached before message n.

Every attached row keeps its payload, root, address and bundle trytes: the hub's archive, because nodes prune.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.channels import channel_state, ensure_channel, load_secrets
from mam_client.mam import create_message
from mam_client.models import ATTACHED, PREPARED, QUEUED, Channel, OutboxMessage, utcnow
from mam_client.settings import MamSettings
from mam_client.transport import FoundBundle, TangleTransport
from scb.db import transaction
from scb.errors import TransportError
from scb.retry import jittered

log = logging.getLogger(__name__)

#: Messages prepared per channel per cycle. Why a bound: each prepare is its own short transaction, and a long
#: backlog (the node was down for a day) should not keep the energy manager waiting for the write lock.
PREPARE_BATCH = 20


class Publisher:
    def __init__(self, factory: sessionmaker[Session], settings: MamSettings, transport: TangleTransport,
                 tag: str = "SCB", clock: Callable[[], float] = time.monotonic) -> None:
        self.factory = factory
        self.settings = settings
        self.transport = transport
        self.tag = tag
        self.clock = clock
        self._secrets: dict[str, tuple[str, str | None]] = {}
        self.backoff = {name: jittered(settings.backoff_initial_s, settings.backoff_max_s)
                        for name in settings.channels}

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

    def attach_one(self, name: str) -> bool:
        """Attach the oldest prepared message of `name`; False when there is none. Raises TransportError."""
        row = self._oldest_prepared(name)
        if row is None:
            return False
        assert row.address and row.payload
        if row.attempts:
            # An earlier attempt may have reached the node before a crash or a lost answer: adopt it.
            for bundle in self.transport.find_bundles(row.address):
                if bundle.carries(row.payload):
                    log.info("message %s of %s was already on the tangle; adopted bundle %s", row.id, name,
                             bundle.bundle_hash)
                    self._mark_attached(row.id, bundle)
                    return True
        with transaction(self.factory) as session:
            fresh = session.get(OutboxMessage, row.id)
            assert fresh is not None
            fresh.attempts += 1
        bundle = self.transport.attach(row.address, row.payload, self.tag)
        self._mark_attached(row.id, bundle)
        log.info("attached message %s of %s at %s (bundle %s)", row.id, name, row.address, bundle.bundle_hash)
        return True

    def _record_error(self, name: str, error: str) -> None:
        with transaction(self.factory) as session:
            row = session.scalars(
                select(OutboxMessage).where(OutboxMessage.channel == name, OutboxMessage.state == PREPARED)
                .order_by(OutboxMessage.id).limit(1)
            ).first()
            if row is not None:
                row.last_error = error[:2000]

    # -- the loop --------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """One cycle over all channels; returns how many messages were attached."""
        attached = 0
        for name in self.settings.channels:
            for _ in range(PREPARE_BATCH):
                if self.prepare_one(name) is None:
                    break
            backoff = self.backoff[name]
            if self.clock() < backoff.not_before:
                continue
            try:
                while self.attach_one(name):
                    attached += 1
                    backoff.succeed()
            except TransportError as exc:
                delay = backoff.fail(self.clock(), str(exc))
                log.warning("channel %s: %s; retrying in %.1f s", name, exc, delay)
                self._record_error(name, str(exc))
        return attached

    def run_forever(self, stop: threading.Event) -> None:
        """Cycle until `stop` is set; ensure_channels() must have run (the service runs it first, so that a
        channel error stops the process at start instead of killing this thread)."""
        while not stop.is_set():
            try:
                self.run_once()
            except TransportError:  # pragma: no cover - run_once handles these per channel
                pass
            stop.wait(self.settings.poll_interval_s)
