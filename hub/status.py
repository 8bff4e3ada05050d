"""The hub at a glance: what `scb status` prints and the dashboard's header shows.

From the database, the process table of `scb run` and the processes' heartbeats alone: it works while the
chain, the node or any process is down (which is when an operator looks).
"""
from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.alerts import Alert, Snapshot, compute
from hub.processes import process_status
from hub.settings import alert_settings
from scb.config import Config
from scb.timefmt import as_utc, utc_iso, utc_iso_dt, utc_iso_ms


def _wall(value: Any) -> float | None:
    """A datetime from the database as wall-clock seconds."""
    return None if value is None else as_utc(value).timestamp()


def collect_status(factory: sessionmaker[Session]) -> dict[str, Any]:
    """The hub's state from its database alone: readings, outbox, the settlement of the newest system."""
    from energy_manager.models import MeterHead, StoredReading
    from mam_client.models import ATTACHED, OutboxMessage
    from settlement.job import load_json_state
    from settlement.models import SettlementPeriod, SupplyDecision, latest_system

    out: dict[str, Any] = {}
    with factory() as session:
        last = session.scalars(select(StoredReading).order_by(StoredReading.id.desc()).limit(1)).first()
        # every meter's readings are numbered 1..seq without gaps and never deleted (energy_meter_heads), so the
        # heads' seqs add up to the count without counting a row: count(*) read every reading at each poll
        out["readings"] = {"count": int(session.scalar(select(func.sum(MeterHead.seq))) or 0),
                           "last": None if last is None else {"id": last.id, "meter": last.meter, "seq": last.seq,
                                                              "ts": utc_iso_ms(last.ts_ms)}}
        depth = session.execute(select(OutboxMessage.state, func.count(OutboxMessage.id))
                                .group_by(OutboxMessage.state)).all()
        attached = session.scalars(select(OutboxMessage).where(OutboxMessage.state == ATTACHED)
                                   .order_by(OutboxMessage.id.desc()).limit(1)).first()
        out["outbox"] = {"by_state": {s: n for s, n in depth},
                         "last_attached": None if attached is None else {
                             "id": attached.id, "address": attached.address,
                             "at": utc_iso_dt(attached.attached_at)}}
        system = latest_system(session)
        if system is None:
            out["settlement"] = None
            return out
        period = session.scalars(select(SettlementPeriod).where(SettlementPeriod.system_ref == system.id)
                                 .order_by(SettlementPeriod.period_id.desc()).limit(1)).first()
        backoff = load_json_state(session, f"settle-backoff:{system.id}") or {}
        holders = json.loads(system.holders_json)
        decisions = {}
        for party, account in holders.items():
            d = session.scalars(select(SupplyDecision).where(SupplyDecision.system_ref == system.id,
                                                             SupplyDecision.party == party)
                                .order_by(SupplyDecision.id.desc()).limit(1)).first()
            decisions[party] = {"account": account, "decision": d.decision if d else None,
                                "reason": d.reason if d else "no decision yet",
                                "status": d.status if d else None, "debt_wei": d.debt_wei if d else None,
                                "applied": d.applied if d else None,
                                "since": utc_iso_dt(d.decided_at) if d else None}
        out["settlement"] = {
            "chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id,
            "hub_account": hub_account_summary(session),
            "last_period": None if period is None else {
                "period_id": period.period_id, "state": period.state, "start": utc_iso(period.start_s),
                "end": utc_iso(period.end_s), "readings": period.reading_count, "tx": period.tx_hash,
                "error": period.last_error},
            "last_error": backoff.get("last_error") or None,
            # "fee-cap": the chain asks more than [ethereum] max_fee_gwei and the settlement waits (settlement.job)
            "trouble": backoff.get("kind") if backoff.get("failures") else None,
            "holders": decisions,
        }
    return out


def hub_account_summary(session: Session) -> dict[str, Any] | None:
    """The hub account's balance as the settlement service last recorded it (settlement.health), with how many
    settlements it pays for at the recorded gas price; None before the service reached the chain."""
    from settlement.health import hub_account_state

    account = hub_account_state(session)
    if account is None:
        return None
    cost = account["settle_gas"] * account["gas_price_wei"]
    return {"account": account["account"], "balance_wei": str(account["balance_wei"]),
            "balance_eth": f"{account['balance_wei'] / 10**18:.6f}",
            "settlements_funded": account["balance_wei"] // cost if cost else None,
            "checked_at": utc_iso(account["checked_at"])}


def snapshot(config: Config, factory: sessionmaker[Session] | None, processes: list[dict[str, Any]],
             now: float | None = None) -> Snapshot:
    """What the alerts look at, from the database, the configuration and the process rows."""
    from energy_manager.models import StoredReading
    from energy_manager.settings import load_energy_settings
    from mam_client.models import ATTACHED, OutboxMessage
    from mam_client.outbox import blocked_channels, oldest_queued
    from settlement.health import hub_account_state, oldest_unsettled_for

    now = time.time() if now is None else now
    energy = load_energy_settings(config)
    by_name = {p.get("name"): p for p in processes}
    em = by_name.get("energy-manager")
    snap = Snapshot(now=now, processes=processes,
                    sample_wall_s=energy.sample_interval_ms / 1000 / energy.clock_speed,
                    sampling_expected=em is not None and em.get("state") not in ("stopped",),
                    energy_started_at=em.get("started_at") if em else None)
    publisher = ((by_name.get("mam-client") or {}).get("loops") or {}).get("publisher") or {}
    snap.node_reachable = (publisher.get("detail") or {}).get("node_reachable")
    if factory is None:
        return snap
    with factory() as session:
        # the newest row's time, found by its id: max(created_at) has no index and read every reading, at each
        # dashboard poll and fleet upload (rows are stored in time order, so the newest id is the newest stored)
        snap.last_reading_at = _wall(session.scalar(
            select(StoredReading.created_at).order_by(StoredReading.id.desc()).limit(1)))
        waiting = oldest_queued(session)
        snap.oldest_unpublished_at = _wall(min(waiting.values())) if waiting else None
        snap.unpublished = session.scalar(select(func.count(OutboxMessage.id))
                                          .where(OutboxMessage.state != ATTACHED)) or 0
        snap.blocked = [{"channel": b.channel, "message_id": b.message_id, "reason": b.reason,
                         "since": _wall(b.since), "retry_at": _wall(b.retry_at)} for b in blocked_channels(session)]
        unsettled = oldest_unsettled_for(config, session, now)
        if unsettled is not None:
            snap.oldest_unsettled_close_at = unsettled.closed_at
            which = f"period {unsettled.period_id}" if unsettled.period_id is not None else "the period"
            snap.unsettled_period = (f"{which} [{utc_iso(unsettled.start_s)} .. {utc_iso(unsettled.end_s)}) "
                                     f"({unsettled.state}, community clock)")
        account = hub_account_state(session)
        if account is not None:
            snap.balance_wei = account["balance_wei"]
            snap.settle_cost_wei = account["settle_gas"] * account["gas_price_wei"]
    return snap


def fleet_upload_status(config: Config, factory: sessionmaker[Session] | None) -> dict[str, Any] | None:
    """The fleet upload's backlog (hub.fleet.upload), None when this hub uploads to no fleet."""
    from hub.fleet.settings import fleet_settings

    settings = fleet_settings(config)
    if factory is None or not settings.uploads:
        return None
    from hub.fleet.upload import backlog

    with factory() as session:
        return {"url": settings.url, **backlog(session)}


def hub_status(config: Config, factory: sessionmaker[Session] | None, now: float | None = None) -> dict[str, Any]:
    """Everything `scb status --json` prints: the database's view, processes with heartbeats, and alerts."""
    processes = process_status(config.data_dir, now)
    status: dict[str, Any] = collect_status(factory) if factory is not None else {
        "readings": None, "outbox": None, "settlement": None}
    status["fleet_upload"] = fleet_upload_status(config, factory)
    status["processes"] = processes
    alerts: list[Alert] = compute(snapshot(config, factory, processes, now), alert_settings(config))
    status["alerts"] = [a.to_json() for a in alerts]
    return status

