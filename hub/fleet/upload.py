"""The hub's upload to its fleet server: `scb fleet-upload`, one process of `scb run` when `[fleet] url` is set.

The queue (hub.fleet.models): five streams of the hub's own rows, each read in id order past its cursor:
    reading     energy_readings, every row (with the MAM address once its message is prepared)
    message     mam_messages once attached (payload, root, address, bundle trytes, the digests it carries)
    settlement  settlement_periods once settled (an abandoned period is passed over: it settles nothing)
    proof       per reading (energy_readings order), its Merkle proof once its period is settled
    decision    settlement_supply_decisions, every row
A stream stops at its first row that is not ready (a message not attached yet, a reading whose period is not
settled): the fleet receives each stream in order. Every batch also carries the hub's heartbeat (processes,
alerts, backlog) when one is due.

Why its own process: the upload waits on a network peer for up to `timeout_s`; in its own process that never holds
up sampling, publishing or settlement, and its database reads are short transactions that take no write lock.
The cursors move only after the fleet answered 200; while the fleet is down or refuses, the loop backs off
(scb.loop) and the rows wait in the hub's database, through restarts.
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import takewhile
from types import FrameType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.fleet import protocol
from hub.fleet.client import FleetClient, FleetRefused, FleetUnavailable
from hub.fleet.models import FleetUploadCursor
from scb.db import transaction
from scb.loop import Guard, Heartbeat, describe

log = logging.getLogger("hub.fleet")

PROCESS = "fleet-upload"
STREAMS = ("reading", "message", "settlement", "proof", "decision")
BATCH_STREAM = "batch"
#: Most MAM messages in one batch. Why: each carries its bundle (2.7 kB of trytes per transaction), so a batch of
#: messages is far larger per item than one of readings; this keeps a batch under a few MB.
MAX_MESSAGES = 100


def _ms(value: Any) -> int | None:
    from scb.timefmt import as_utc

    return None if value is None else int(as_utc(value).timestamp() * 1000)


@dataclass
class Collected:
    items: list[dict[str, Any]] = field(default_factory=list)
    #: stream -> the cursor to store once the fleet acknowledged (covers rows passed over, too)
    advance: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, stream: str, ref: int, item: dict[str, Any] | None) -> None:
        if item is not None:
            self.items.append(item)
            self.counts[stream] = self.counts.get(stream, 0) + 1
        self.advance[stream] = ref


def load_cursors(session: Session) -> dict[str, FleetUploadCursor]:
    rows = {r.stream: r for r in session.scalars(select(FleetUploadCursor))}
    for stream in (*STREAMS, BATCH_STREAM):
        if stream not in rows:
            rows[stream] = FleetUploadCursor(stream=stream, cursor=0, sent=0, attempts=0)
            session.add(rows[stream])
    return rows


def _cursor_values(session: Session) -> dict[str, int]:
    values = {s: 0 for s in (*STREAMS, BATCH_STREAM)}
    values.update({r.stream: int(r.cursor) for r in session.scalars(select(FleetUploadCursor))})
    return values


def collect(session: Session, cursors: dict[str, int], limit: int) -> Collected:
    """The next batch's items: each stream in order from its cursor, at most `limit` items in all."""
    from energy_manager.models import StoredReading
    from mam_client.models import ATTACHED, Channel, OutboxMessage
    from settlement.models import (
        ABANDONED,
        SETTLED,
        ReadingProof,
        SettlementPeriod,
        SettlementSystem,
        SupplyDecision,
    )

    out = Collected()

    def room() -> int:
        return limit - len(out.items)

    # readings, with the address of their message once it is prepared
    rows = session.execute(select(StoredReading, OutboxMessage.address)
                           .outerjoin(OutboxMessage, OutboxMessage.id == StoredReading.message_id)
                           .where(StoredReading.id > cursors["reading"]).order_by(StoredReading.id)
                           .limit(room())).all()
    for reading, address in rows:
        out.add("reading", reading.id, {
            "kind": "reading", "id": reading.id, "canonical": bytes(reading.canonical).decode("ascii"),
            "digest": reading.digest, "delta_wh": reading.delta_wh, "flags": reading.flags,
            "message_id": reading.message_id, "address": address})
    # attached MAM messages, in id order: the first one not attached yet holds the rest back
    if room() > 0:
        messages = session.execute(select(OutboxMessage, Channel.mode)
                                   .outerjoin(Channel, Channel.name == OutboxMessage.channel)
                                   .where(OutboxMessage.id > cursors["message"]).order_by(OutboxMessage.id)
                                   .limit(min(room(), MAX_MESSAGES))).all()
        ready = list(takewhile(lambda row: row[0].state == ATTACHED, messages))
        # the digests each message carries, for all of them in one query (not one per message)
        carried: dict[int, list[str]] = {message.id: [] for message, _ in ready}
        if carried:
            for message_id, digest in session.execute(select(StoredReading.message_id, StoredReading.digest)
                                                      .where(StoredReading.message_id.in_(list(carried)))
                                                      .order_by(StoredReading.id)):
                carried[message_id].append(digest)
        for message, mode in ready:
            out.add("message", message.id, {
                "kind": "message", "id": message.id, "channel": message.channel, "mode": mode,
                "root": message.root, "address": message.address, "next_root": message.next_root,
                "payload": message.payload, "bundle_hash": message.bundle_hash,
                "tx_hashes": json.loads(message.tx_hashes or "[]"),
                "bundle_trytes": json.loads(message.bundle_trytes or "[]"),
                "attached_at_ms": _ms(message.attached_at), "readings": carried[message.id]})
    # settled periods; an abandoned one is passed over
    if room() > 0:
        periods = session.execute(select(SettlementPeriod, SettlementSystem)
                                  .join(SettlementSystem, SettlementSystem.id == SettlementPeriod.system_ref)
                                  .where(SettlementPeriod.id > cursors["settlement"]).order_by(SettlementPeriod.id)
                                  .limit(room())).all()
        for period, system in periods:
            if period.state == ABANDONED:
                out.add("settlement", period.id, None)
                continue
            if period.state != SETTLED:
                break
            out.add("settlement", period.id, {
                "kind": "settlement", "id": period.id, **_system_fields(system),
                "period_id": period.period_id, "start_s": period.start_s, "end_s": period.end_s,
                "readings_root": period.readings_root, "mam_root": period.mam_root,
                "reading_count": period.reading_count, "late_count": period.late_count,
                "generation_wh": period.generation_wh, "consumption": json.loads(period.consumption_json),
                "tx_hash": period.tx_hash, "block_number": period.block_number,
                "channel_root": system.channel_root, "holders": json.loads(system.holders_json),
                "settled_at_ms": _ms(period.settled_at)})
    # proofs, per reading in reading order, once the reading's period is settled
    if room() > 0:
        proofs = session.execute(select(StoredReading.id, StoredReading.digest, ReadingProof, SettlementPeriod,
                                        SettlementSystem)
                                 .outerjoin(ReadingProof, ReadingProof.reading_id == StoredReading.id)
                                 .outerjoin(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                                 .outerjoin(SettlementSystem, SettlementSystem.id == SettlementPeriod.system_ref)
                                 .where(StoredReading.id > cursors["proof"]).order_by(StoredReading.id)
                                 .limit(room())).all()
        for reading_id, digest, proof, period, system in proofs:
            if proof is None or period is None or period.state != SETTLED:
                break
            out.add("proof", reading_id, {
                "kind": "proof", "reading_id": reading_id, "digest": digest, **_system_fields(system),
                "period_id": period.period_id, "proof": ["0x" + s.hex() for s in proof.siblings()],
                "late": bool(proof.late)})
    if room() > 0:
        decisions = session.execute(select(SupplyDecision, SettlementSystem)
                                    .join(SettlementSystem, SettlementSystem.id == SupplyDecision.system_ref)
                                    .where(SupplyDecision.id > cursors["decision"]).order_by(SupplyDecision.id)
                                    .limit(room())).all()
        for d, system in decisions:
            out.add("decision", d.id, {
                "kind": "decision", "id": d.id, **_system_fields(system), "party": d.party, "account": d.account,
                "decision": d.decision, "reason": d.reason, "status": d.status, "prepaid_wei": d.prepaid_wei,
                "debt_wei": d.debt_wei, "next_due": d.next_due, "block_number": d.block_number,
                "community_ms": d.community_ms, "decided_at_ms": _ms(d.decided_at), "applied": bool(d.applied),
                "actuator": d.actuator})
    return out


def _system_fields(system: Any) -> dict[str, Any]:
    return {"chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id}


def backlog(session: Session) -> dict[str, Any]:
    """What waits for the fleet, per stream (rows past the cursor, ready or not), for `scb status`."""
    from energy_manager.models import StoredReading
    from mam_client.models import OutboxMessage
    from settlement.models import SettlementPeriod, SupplyDecision

    rows = {r.stream: r for r in session.scalars(select(FleetUploadCursor))}  # read once: cursors and batch row
    tables = {"reading": StoredReading.id, "message": OutboxMessage.id, "settlement": SettlementPeriod.id,
              "proof": StoredReading.id, "decision": SupplyDecision.id}
    cursors = {s: int(r.cursor) for s, r in rows.items()}
    waiting = {s: int(session.scalar(select(func.count(col)).where(col > cursors.get(s, 0))) or 0)
               for s, col in tables.items()}
    batch = rows.get(BATCH_STREAM)
    return {"waiting": waiting, "total": sum(waiting.values()),
            "batches_sent": int(batch.cursor) if batch else 0,
            "last_ok": _ms(batch.updated_at) if batch and batch.cursor else None,
            "last_error": batch.last_error if batch else None}


@dataclass
class Uploader:
    """One step = one batch (see the module docstring). `account` gives the hub's signing account (an
    settlement.signing.Signer; called once, on the first step, so that a chain down at start is retried)."""

    factory: sessionmaker[Session]
    client: FleetClient
    account: Callable[[], Any]
    hub_id: str
    batch_max_items: int = 1000
    heartbeat_interval_s: float = 30.0
    status: Callable[[], dict[str, Any]] | None = None
    clock: Callable[[], float] = time.time
    _signer: Any = None
    _last_heartbeat: float = float("-inf")

    def heartbeat(self, backlog_now: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"status": {}, "alerts": []}
        if self.status is not None:
            try:
                body = self.status()
            except Exception as exc:  # noqa: BLE001 - a status that cannot be read is reported, not fatal
                body = {"status": {}, "alerts": [], "status_error": describe(exc)}
        return {**body, "upload_backlog": backlog_now["total"], "sent_at_ms": int(self.clock() * 1000)}

    def step(self) -> float | None:
        if self._signer is None:
            self._signer = self.account()
        with self.factory() as session:
            cursors = _cursor_values(session)
            batch_items = collect(session, cursors, self.batch_max_items)
            due = self.clock() - self._last_heartbeat >= self.heartbeat_interval_s
            waiting = backlog(session) if due else None
        if not batch_items.advance and not due:
            return None
        heartbeat = self.heartbeat(waiting) if waiting is not None else None
        seq = cursors[BATCH_STREAM] + 1
        batch = protocol.make_batch(self.hub_id, self._signer.address, seq, int(self.clock() * 1000),
                                    batch_items.items, heartbeat)
        envelope = protocol.sign(batch, self._signer)
        try:
            receipt = self.client.upload(envelope)
        except (FleetUnavailable, FleetRefused) as exc:
            self._record_failure(describe(exc))
            raise
        with transaction(self.factory) as session:
            rows = load_cursors(session)
            for stream, ref in batch_items.advance.items():
                rows[stream].cursor = max(int(rows[stream].cursor), ref)
                rows[stream].sent = int(rows[stream].sent) + batch_items.counts.get(stream, 0)
            rows[BATCH_STREAM].cursor = seq
            rows[BATCH_STREAM].sent = int(rows[BATCH_STREAM].sent) + 1
            rows[BATCH_STREAM].attempts = 0
            rows[BATCH_STREAM].last_error = None
        if due:
            self._last_heartbeat = self.clock()
        log.debug("batch %d: %d items; fleet stored %s", seq, len(batch_items.items), receipt.get("stored"))
        # a full batch: there is more, go on at once
        return 0.0 if len(batch_items.items) >= self.batch_max_items or \
            batch_items.counts.get("message", 0) >= MAX_MESSAGES else None

    def _record_failure(self, reason: str) -> None:
        try:
            with transaction(self.factory) as session:
                row = load_cursors(session)[BATCH_STREAM]
                row.attempts = int(row.attempts or 0) + 1
                row.last_error = reason
        except Exception as exc:  # noqa: BLE001 - the upload's own error is what the loop reports
            log.debug("could not record the upload failure: %s", describe(exc))

    def run_forever(self, stop: threading.Event, heartbeat: Heartbeat, interval_s: float) -> None:
        Guard(PROCESS, heartbeat, interval_s).run(self.step, stop)


def hub_signer(config: Any) -> Callable[[], Any]:
    """The hub's Ethereum account, as settlement signs with it: the keystore, else (development chain only) the
    chain's first development account."""

    def load() -> Any:
        from settlement.chain import connect, load_keystore
        from settlement.settings import ethereum_settings

        eth = ethereum_settings(config)
        if eth.keystore_file is not None and eth.password_file is not None:
            return load_keystore(eth.keystore_file, eth.password_file)
        return connect(eth).account

    return load


def run(config: Any, stop: threading.Event | None = None) -> int:
    """`scb fleet-upload`: upload until SIGTERM/SIGINT."""
    from energy_manager.settings import load_energy_settings
    from hub.fleet.settings import fleet_settings
    from hub.status import hub_status
    from scb.db import open_database
    from scb.errors import UsageError
    from scb.files import exclusive_lock

    settings = fleet_settings(config)
    if not settings.uploads:
        raise UsageError("no fleet to upload to: set [fleet] url (docs/fleet.md)")
    stop = stop or threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    with exclusive_lock(config.data_dir / "run" / "fleet-upload.lock", "fleet uploader"):
        factory = open_database(config)

        def status() -> dict[str, Any]:
            full = hub_status(config, factory)
            return {"status": {k: full.get(k) for k in ("readings", "outbox", "settlement")},
                    "processes": [{k: p.get(k) for k in ("name", "state", "restarts", "heartbeat_age_s")}
                                  for p in full.get("processes", [])],
                    "alerts": full.get("alerts", [])}

        uploader = Uploader(factory, FleetClient(settings.url, settings.timeout_s), hub_signer(config),
                            hub_id=load_energy_settings(config).hub_id, batch_max_items=settings.batch_max_items,
                            heartbeat_interval_s=settings.heartbeat_interval_s, status=status)
        log.info("uploading to the fleet at %s", settings.url)
        uploader.run_forever(stop, Heartbeat(config.data_dir, PROCESS), settings.upload_interval_s)
    return 0
