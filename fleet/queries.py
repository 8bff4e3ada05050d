"""What the fleet's JSON API, its CSV export and its page read (synchronous; the server runs them in its database
threads). Every list is bounded and paginated by id (`after`), never by offset. Why: an offset re-reads every
skipped row, and rows arriving meanwhile shift the pages."""
from __future__ import annotations

import json
import time
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.models import FleetDecision, FleetHub, FleetMessage, FleetProof, FleetReading, FleetSettlement
from scb.errors import BadRequest
from scb.timefmt import utc_iso_ms

_Row = TypeVar("_Row", FleetReading, FleetMessage)
#: Most rows one page of the API returns (readings); the CSV export streams pages of this size.
MAX_PAGE = 10_000


def hub_by_account(session: Session, account: str) -> FleetHub:
    hub = session.scalars(select(FleetHub).where(func.lower(FleetHub.account) == account.lower())).first()
    if hub is None:
        raise BadRequest(f"no hub with account {account[:42]} has uploaded to this fleet", status=404)
    return hub


def _last_settlement(session: Session, hub: FleetHub) -> FleetSettlement | None:
    return session.scalars(select(FleetSettlement).where(FleetSettlement.hub_ref == hub.id)
                           .order_by(FleetSettlement.id.desc()).limit(1)).first()


def hub_summary(session: Session, hub: FleetHub, stale_after_s: float, now: float | None = None) -> dict[str, Any]:
    readings = int(session.scalar(select(func.count(FleetReading.id)).where(FleetReading.hub_ref == hub.id)) or 0)
    return _summary(hub, _last_settlement(session, hub), readings, stale_after_s, now)


def hubs(session: Session, stale_after_s: float) -> list[dict[str, Any]]:
    """Every hub's summary, from three queries whatever the number of hubs (the fleet page and /api/v1/hubs):
    the hubs, their reading counts, their newest settlements; not two queries more per hub."""
    counts = dict(session.execute(select(FleetReading.hub_ref, func.count(FleetReading.id))
                                  .group_by(FleetReading.hub_ref)).tuples().all())
    newest = select(func.max(FleetSettlement.id).label("id")).group_by(FleetSettlement.hub_ref).subquery()
    last = {s.hub_ref: s for s in session.scalars(select(FleetSettlement)
                                                   .join(newest, FleetSettlement.id == newest.c.id))}
    now = time.time()
    return [_summary(h, last.get(h.id), int(counts.get(h.id, 0)), stale_after_s, now)
            for h in session.scalars(select(FleetHub).order_by(FleetHub.id))]


def _summary(hub: FleetHub, last: FleetSettlement | None, readings: int, stale_after_s: float,
             now: float | None) -> dict[str, Any]:
    now = time.time() if now is None else now
    heartbeat = json.loads(hub.heartbeat_json) if hub.heartbeat_json else {}
    age = None if hub.heartbeat_ms is None else round(now - hub.heartbeat_ms / 1000, 1)
    status = heartbeat.get("status") if isinstance(heartbeat.get("status"), dict) else {}
    outbox = (status.get("outbox") or {}).get("by_state") if isinstance(status.get("outbox"), dict) else None
    return {
        "account": hub.account, "name": hub.name, "last_batch_seq": hub.last_batch_seq,
        "last_heartbeat": utc_iso_ms(hub.heartbeat_ms) if hub.heartbeat_ms is not None else None,
        "heartbeat_age_s": age, "stale": age is None or age > stale_after_s,
        "upload_backlog": hub.upload_backlog,
        "outbox_depth": sum(v for k, v in (outbox or {}).items() if k != "attached") if outbox else None,
        "alerts": heartbeat.get("alerts") if isinstance(heartbeat.get("alerts"), list) else [],
        "processes": heartbeat.get("processes") if isinstance(heartbeat.get("processes"), list) else [],
        "last_settlement": None if last is None else {
            "period_id": last.period_id, "contract": last.contract, "system_id": last.system_id,
            "start_s": last.start_s, "end_s": last.end_s, "tx": last.tx_hash,
            "settled_at": utc_iso_ms(last.settled_at_ms) if last.settled_at_ms else None},
        "readings": readings,
    }


def reading_json(r: FleetReading) -> dict[str, Any]:
    return {"id": r.id, "hub_reading_id": r.hub_reading_id, "meter": r.meter, "party": r.party,
            "circuit": r.circuit, "seq": r.seq, "ts_ms": r.ts_ms, "ts": utc_iso_ms(r.ts_ms),
            "register_wh": r.register_wh, "power_w": r.power_w, "delta_wh": r.delta_wh, "flags": r.flags,
            "digest": r.digest, "canonical": bytes(r.canonical).decode("ascii"), "address": r.address}


def readings(session: Session, hub: FleetHub, *, start_ms: int | None, end_ms: int | None, meter: str | None,
             after: int, limit: int) -> tuple[list[FleetReading], int | None]:
    """One page of a hub's readings in [start_ms, end_ms), optionally of one meter, by fleet id after `after`."""
    query = select(FleetReading).where(FleetReading.hub_ref == hub.id, FleetReading.id > after)
    if start_ms is not None:
        query = query.where(FleetReading.ts_ms >= start_ms)
    if end_ms is not None:
        query = query.where(FleetReading.ts_ms < end_ms)
    if meter is not None:
        query = query.where(FleetReading.meter == meter)
    return _page(list(session.scalars(query.order_by(FleetReading.id).limit(limit + 1))), limit)


def _page(rows: list[_Row], limit: int) -> tuple[list[_Row], int | None]:
    """A page of `rows` read with `limit + 1`: its first `limit` rows, and the `after` of the next page (None: none;
    the extra row only says whether there is one)."""
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit and page else None)


def message_json(m: FleetMessage) -> dict[str, Any]:
    return {"id": m.id, "hub_message_id": m.hub_message_id, "channel": m.channel, "mode": m.mode, "root": m.root,
            "address": m.address, "next_root": m.next_root, "payload": m.payload, "bundle_hash": m.bundle_hash,
            "readings": m.reading_count,
            "attached_at": utc_iso_ms(m.attached_at_ms) if m.attached_at_ms else None}


def messages(session: Session, hub: FleetHub, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    query = select(FleetMessage).where(FleetMessage.hub_ref == hub.id, FleetMessage.id > after)
    rows, nxt = _page(list(session.scalars(query.order_by(FleetMessage.id).limit(limit + 1))), limit)
    return [message_json(m) for m in rows], nxt


def settlement_json(s: FleetSettlement) -> dict[str, Any]:
    return {"chain_id": s.chain_id, "contract": s.contract, "system_id": s.system_id, "period_id": s.period_id,
            "start_s": s.start_s, "end_s": s.end_s, "readings_root": s.readings_root, "mam_root": s.mam_root,
            "reading_count": s.reading_count, "late_count": s.late_count, "generation_wh": s.generation_wh,
            "consumption": json.loads(s.consumption_json), "tx_hash": s.tx_hash, "block_number": s.block_number,
            "channel_root": s.channel_root, "holders": json.loads(s.holders_json),
            "settled_at": utc_iso_ms(s.settled_at_ms) if s.settled_at_ms else None}


def settlements(session: Session, hub: FleetHub, after_period: int, limit: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(FleetSettlement).where(FleetSettlement.hub_ref == hub.id,
                                                         FleetSettlement.period_id > after_period)
                           .order_by(FleetSettlement.period_id).limit(limit))
    return [settlement_json(s) for s in rows]


def holders(session: Session, hub: FleetHub) -> list[dict[str, Any]]:
    """Each holder of the hub's newest system: the energy billed per settled period (the consumption the hub
    settled; the contract prices it) and the standing of its newest supply decision."""
    last = _last_settlement(session, hub)
    if last is None:
        return []
    system = (FleetDecision.hub_ref == hub.id, FleetDecision.contract == last.contract,
              FleetDecision.system_id == last.system_id)
    periods = list(session.scalars(select(FleetSettlement).where(
        FleetSettlement.hub_ref == hub.id, FleetSettlement.contract == last.contract,
        FleetSettlement.system_id == last.system_id).order_by(FleetSettlement.period_id)))
    # each period's consumption parsed once, not once per holder
    consumption = [(p, json.loads(p.consumption_json)) for p in periods]
    # every party's newest decision in one query (its highest hub decision id), not one query per holder
    newest = (select(FleetDecision.party, func.max(FleetDecision.hub_decision_id).label("newest"))
              .where(*system).group_by(FleetDecision.party).subquery())
    standing_of = {d.party: d for d in session.scalars(select(FleetDecision).join(
        newest, (FleetDecision.party == newest.c.party) & (FleetDecision.hub_decision_id == newest.c.newest))
        .where(*system))}
    out = []
    for party, account in json.loads(last.holders_json).items():
        bills = [{"period_id": p.period_id, "start_s": p.start_s, "end_s": p.end_s, "wh": entry.get("wh"),
                  "tx_hash": p.tx_hash}
                 for p, entries in consumption for entry in entries
                 if isinstance(entry, dict) and str(entry.get("account", "")).lower() == str(account).lower()]
        d = standing_of.get(party)
        standing = None if d is None else {
            "decision": d.decision, "reason": d.reason, "status": d.status, "prepaid_wei": d.prepaid_wei,
            "debt_wei": d.debt_wei, "next_due": d.next_due, "block_number": d.block_number,
            "decided_at": utc_iso_ms(d.decided_at_ms) if d.decided_at_ms else None, "applied": d.applied}
        out.append({"party": party, "account": account, "bills": bills, "standing": standing})
    return out


def message_at(session: Session, address: str) -> dict[str, Any] | None:
    """The message(s) at a MAM address, with the hub and the system that settles it (for `scb verify --fleet`)."""
    rows = list(session.scalars(select(FleetMessage).where(FleetMessage.address == address)
                                .order_by(FleetMessage.id)))
    if not rows:
        return None
    hub = session.get(FleetHub, rows[0].hub_ref)
    assert hub is not None
    last = _last_settlement(session, hub)
    return {"hub": hub.account, "hub_name": hub.name, "messages": [message_json(m) for m in rows],
            "system": None if last is None else {"chain_id": last.chain_id, "contract": last.contract,
                                                 "system_id": last.system_id, "channel_root": last.channel_root}}


def proof_of(session: Session, digest: str) -> dict[str, Any] | None:
    proof = session.scalars(select(FleetProof).where(FleetProof.digest == digest).limit(1)).first()
    # by the proof's hub when there is a proof: fleet_readings is indexed by (hub_ref, digest), not by digest
    # alone, and `scb verify --fleet` asks once per reading (a digest names one hub's reading: it hashes the hub id)
    readings = select(FleetReading).where(FleetReading.digest == digest)
    if proof is not None:
        readings = readings.where(FleetReading.hub_ref == proof.hub_ref)
    reading = session.scalars(readings.limit(1)).first()
    if proof is None and reading is None:
        return None
    out: dict[str, Any] = {"digest": digest, "reading": reading_json(reading) if reading else None, "proof": None}
    if proof is not None:
        siblings = bytes(proof.proof)
        out["proof"] = {"chain_id": proof.chain_id, "contract": proof.contract, "system_id": proof.system_id,
                        "period_id": proof.period_id, "late": proof.late,
                        "siblings": ["0x" + siblings[i:i + 32].hex() for i in range(0, len(siblings), 32)]}
    return out
