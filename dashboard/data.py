"""What the dashboard shows, read from the hub's database and (for holders' standing) the chain.

Everything here only reads. The hub's writers open SQLite transactions with `BEGIN IMMEDIATE` (the write lock, so
two writers never deadlock); a dashboard reading that way would hold the writers up for the length of every query.
So the dashboard's session factory is `scb.db.make_engine(..., read_only=True)`: deferred transactions (WAL
readers never block the writer) and `PRAGMA query_only`, so that a bug here cannot change the hub's records.

The overview is `hub.status.hub_status` (what `scb status` prints); the lists below it (chart series, messages,
periods, decisions) are what `scb status` does not show. Times are `scb.timefmt`'s; a time that is missing is
null in the JSON (the page shows a dash).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from mam_client.models import OutboxMessage
from scb.config import Config
from scb.db import init_db, make_engine, make_sessionmaker
from scb.errors import ChainRefused, ConfigError, TransportError
from scb.loop import Guard, Heartbeat, Waiting, default_on_fatal
from scb.timefmt import utc_iso, utc_iso_dt, utc_iso_ms
from settlement.models import SETTLED, SettlementPeriod, SettlementSystem, SupplyDecision, latest_system
from settlement.solar_property import SolarProperty
from settlement.system import SystemRef, newest_system

log = logging.getLogger("dashboard")

HOUR_MS = 3_600_000
#: the collector's loop name in the dashboard's heartbeat (process "dashboard")
COLLECTOR = "holders"


# ------------------------------------------------------------------------------------------------ the database


def open_read_database(config: Config) -> sessionmaker[Session]:
    """Migrate the schema like every process does at start (the dashboard may be the first to run), then a
    read-only session factory (`scb.db.make_engine(read_only=True)`, with the configured busy timeout)."""
    init_db(config).dispose()
    return make_sessionmaker(make_engine(config.database_url, config.sqlite_synchronous,
                                         config.sqlite_busy_timeout_ms, read_only=True))


# ------------------------------------------------------------------------------------------------ the chart


def energy_series(factory: sessionmaker[Session], bucket: str, points: int, window_ms: int) -> dict[str, Any]:
    """Generation against each holder's consumption, per publish window or per hour of community time.

    Energy is the sum of the readings' `delta_wh` (the energy manager's register rules: never negative across
    resets, a gap's energy on the reading after it), the same numbers settlement bills; the last `points`
    buckets up to the newest reading.
    """
    size = window_ms if bucket == "window" else HOUR_MS
    with factory() as session:
        newest = session.scalar(select(func.max(StoredReading.ts_ms)))
        if newest is None:
            return {"bucket": bucket, "bucket_ms": size, "parties": [], "points": [], "newest_ms": None}
        since = newest - newest % size - (points - 1) * size
        # a reading's window starts at or before its time, so `ts_ms >= since` holds for every reading of the
        # windows wanted: it lets SQLite use the ts_ms index instead of scanning every reading ever stored
        where = StoredReading.ts_ms >= since
        if bucket == "window":
            key = StoredReading.window_start_ms
            where = where & (StoredReading.window_start_ms >= since)
        else:
            key = (StoredReading.ts_ms // size) * size
        rows = session.execute(
            select(key.label("start"), StoredReading.circuit, StoredReading.party, func.sum(StoredReading.delta_wh))
            .where(where).group_by(key, StoredReading.circuit, StoredReading.party)).all()
    by_start: dict[int, dict[str, Any]] = {}
    parties: set[str] = set()
    for start, circuit, party, wh in rows:
        start = int(start)
        point = by_start.setdefault(start, {"start_ms": start, "end_ms": start + size, "generation_wh": 0,
                                            "consumption_wh": {}, "grid_import_wh": 0, "grid_export_wh": 0})
        wh = int(wh or 0)
        if circuit == "generation":
            point["generation_wh"] += wh
        elif circuit == "consumption":
            parties.add(party)
            point["consumption_wh"][party] = point["consumption_wh"].get(party, 0) + wh
        elif circuit in ("grid_import", "grid_export"):
            point[f"{circuit}_wh"] += wh
    series = [by_start[k] for k in sorted(by_start)]
    for point in series:
        point["start"] = utc_iso_ms(point["start_ms"])
        point["open"] = point["end_ms"] > newest  # still filling: the newest reading is inside it
    return {"bucket": bucket, "bucket_ms": size, "parties": sorted(parties), "points": series,
            "newest_ms": newest, "newest": utc_iso_ms(newest)}


# ------------------------------------------------------------------------------------------------ messages


def recent_messages(factory: sessionmaker[Session], limit: int, before_id: int | None = None) -> list[dict[str, Any]]:
    """The newest outbox messages (all states), with how many readings each carries and whether they are settled
    (a message can be verified end to end once every reading in it is in a settled period)."""
    with factory() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(OutboxMessage.id < before_id)
        messages = list(session.scalars(query))
        ids = [m.id for m in messages]
        counts: dict[int, tuple[int, int, int, int]] = {}
        periods: dict[int, set[int | None]] = {}
        if ids:
            for mid, n, lo, hi in session.execute(
                    select(StoredReading.message_id, func.count(StoredReading.id), func.min(StoredReading.ts_ms),
                           func.max(StoredReading.ts_ms))
                    .where(StoredReading.message_id.in_(ids)).group_by(StoredReading.message_id)):
                counts[mid] = (n, lo, hi, 0)
            for mid, period in session.execute(
                    select(StoredReading.message_id, StoredReading.period).where(StoredReading.message_id.in_(ids))
                    .group_by(StoredReading.message_id, StoredReading.period)):
                periods.setdefault(mid, set()).add(period)
        system = latest_system(session)
        settled: set[int] = set()
        if system is not None:
            wanted = {p for ps in periods.values() for p in ps if p is not None}
            if wanted:
                settled = set(session.scalars(select(SettlementPeriod.period_id).where(
                    SettlementPeriod.system_ref == system.id, SettlementPeriod.state == SETTLED,
                    SettlementPeriod.period_id.in_(wanted))))
    out = []
    for m in messages:
        n, lo, hi, _ = counts.get(m.id, (0, None, None, 0))
        ps = periods.get(m.id, set())
        out.append({
            "id": m.id, "channel": m.channel, "state": m.state, "address": m.address, "root": m.root,
            "bundle": m.bundle_hash, "attempts": m.attempts, "last_error": m.last_error,
            "created_at": utc_iso_dt(m.created_at), "attached_at": utc_iso_dt(m.attached_at),
            "readings": n, "first_reading": utc_iso_ms(lo) if lo is not None else None,
            "last_reading": utc_iso_ms(hi) if hi is not None else None,
            "periods": sorted(p for p in ps if p is not None),
            "settled": bool(ps) and None not in ps and ps <= settled,  # type: ignore[operator]
        })
    return out


def message_address_known(factory: sessionmaker[Session], address: str) -> bool:
    """Whether this hub published a message at `address` (the dashboard verifies its own messages only)."""
    with factory() as session:
        return session.scalar(select(OutboxMessage.id).where(OutboxMessage.address == address).limit(1)) is not None


# ------------------------------------------------------------------------------------------------ settlements


def settlements(factory: sessionmaker[Session], limit: int, before: int | None = None) -> dict[str, Any]:
    """The system's periods, newest first, with their transactions, amounts and errors."""
    with factory() as session:
        system = latest_system(session)
        if system is None:
            return {"system": None, "periods": []}
        query = (select(SettlementPeriod).where(SettlementPeriod.system_ref == system.id)
                 .order_by(SettlementPeriod.period_id.desc()).limit(limit))
        if before is not None:
            query = query.where(SettlementPeriod.period_id < before)
        rows = list(session.scalars(query))
    periods = []
    for p in rows:
        try:
            consumption = json.loads(p.consumption_json)
        except ValueError:
            consumption = []
        periods.append({
            "period_id": p.period_id, "state": p.state, "start": utc_iso(p.start_s),
            "end": utc_iso(p.end_s), "start_s": p.start_s, "end_s": p.end_s, "readings": p.reading_count,
            "late": p.late_count, "generation_wh": p.generation_wh, "consumption": consumption,
            "readings_root": p.readings_root, "mam_root": p.mam_root, "tx": p.tx_hash, "block": p.block_number,
            "attempts": p.attempts, "error": p.last_error, "settled_at": utc_iso_dt(p.settled_at),
        })
    return {"system": _system_json(system), "periods": periods}


def _system_json(system: SettlementSystem) -> dict[str, Any]:
    return {"chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id,
            "hub": system.hub, "channel": system.channel, "channel_root": system.channel_root,
            "demo": system.demo}


def supply_decisions(factory: sessionmaker[Session], limit: int, before_id: int | None = None) -> list[dict[str, Any]]:
    """Supply decisions, newest first: only changes are stored, each with the standing it was based on."""
    with factory() as session:
        system = latest_system(session)
        if system is None:
            return []
        query = (select(SupplyDecision).where(SupplyDecision.system_ref == system.id)
                 .order_by(SupplyDecision.id.desc()).limit(limit))
        if before_id is not None:
            query = query.where(SupplyDecision.id < before_id)
        rows = list(session.scalars(query))
    return [_decision_json(d) for d in rows]


def _decision_json(d: SupplyDecision) -> dict[str, Any]:
    return {"id": d.id, "party": d.party, "account": d.account, "decision": d.decision, "reason": d.reason,
            "status": d.status, "prepaid_wei": d.prepaid_wei, "debt_wei": d.debt_wei,
            "next_due": utc_iso(d.next_due) if d.next_due else None, "block": d.block_number,
            "community_time": utc_iso_ms(d.community_ms) if d.community_ms else None,
            "decided_at": utc_iso_dt(d.decided_at), "actuator": d.actuator, "applied": d.applied,
            "apply_error": d.apply_error}


# ------------------------------------------------------------------------------------------------ holders


@dataclass
class ChainReading:
    """One successful reading of every holder from the chain (kept to show when the chain is unreachable)."""

    system: tuple[str, int]  # (contract, system id) it was read for
    block: int
    block_time: int
    read_at: float  # wall-clock seconds
    holders: dict[str, dict[str, Any]]  # lowercase account -> values


class HolderBoard:
    """Holders' standing, equity and debt: from the chain with `eth_call` (`holderList`, `holderInfo`: no gas, no
    transaction, one block: settlement.solar_property), reused for `cache_s`; when the chain cannot be read, the
    last values read from it in this process and the last standing stored with each supply decision, labelled as
    such.

    Two ways to keep it current: on demand (a page's request reads the chain when the last reading is older than
    `cache_s`), or, after `start()`, a collector thread that reads it every `cache_s` under scb.loop's failure
    policy (loop "holders" of the dashboard's heartbeat), so that a page never waits for a slow node. Either way
    the chain unreachable or refusing is shown and asked again after `cache_s`; a ConfigError is shown and never
    retried; a database error backs off (collector) or fails the request; anything else is a bug (the collector
    exits the process with code 70, a request gets the app's 500).

    `client_for()` builds the chain client (default: the configured node, with the dashboard's shorter timeout).
    """

    def __init__(self, config: Config, factory: sessionmaker[Session], cache_s: float, timeout_s: float,
                 client_for: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.factory = factory
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._client_for = client_for or self._default_client
        self._clock = clock
        self._lock = threading.Lock()
        self._last: ChainReading | None = None
        #: the last failed attempt (wall-clock seconds) and why: not retried within cache_s either, so that pages
        #: polling a dead node do not each wait for its timeout
        self._failed: tuple[float, str] | None = None
        #: a configuration the chain cannot be read with ([ethereum], the contract artifact): never retried (fix
        #: it and restart the dashboard); the page shows it with the stored standing
        self._config_error: str | None = None
        self._collector: threading.Thread | None = None

    # -- the collector ----------------------------------------------------------------------------------------
    def start(self, heartbeat: Heartbeat, stop: threading.Event,
              on_fatal: Callable[[str, BaseException], None] = default_on_fatal) -> threading.Thread:
        """Read the chain every `cache_s` in a thread of its own, under the failure policy, until `stop`."""
        guard = Guard(COLLECTOR, heartbeat, self.cache_s, on_fatal)
        self._collector = threading.Thread(target=guard.run, args=(self.refresh, stop), name="dashboard-holders",
                                           daemon=True)
        self._collector.start()
        return self._collector

    def refresh(self) -> Waiting | None:
        """One reading of the chain (the collector's step); trouble with the chain is shown, not raised."""
        system = newest_system(self.factory)
        if system is None:
            return None  # nothing to read yet (the settlement has not registered or found a system)
        with self._lock:
            error = self._config_error or self._read_locked(system, self._clock())
        return Waiting(error) if error else None

    def _read_locked(self, system: SystemRef, now: float) -> str | None:
        """Read the chain (the caller holds the lock); the error to show, None when it worked."""
        try:
            self._last = self._read_chain(system)
            self._failed = None
            return None
        except (TransportError, ChainRefused) as exc:
            # unreachable, reverted or no contract code (a reset chain: the settlement deploys again): shown with
            # the last values, asked again after cache_s
            self._failed = (now, str(exc))
            log.warning("dashboard: holders' standing not read from the chain: %s", exc)
            return str(exc)
        except ConfigError as exc:
            self._config_error = str(exc)
            log.error("dashboard: holders' standing cannot be read from the chain until the configuration is fixed "
                      "and the dashboard restarted: %s", exc)
            return self._config_error

    def client_for(self) -> Any:
        """A chain client as the board reads with (the configured node, the dashboard's shorter timeout)."""
        return self._client_for()

    def _default_client(self) -> Any:
        from settlement.chain import ChainClient
        from settlement.settings import ethereum_settings

        eth = ethereum_settings(self.config)
        return ChainClient(replace(eth, timeout_s=min(eth.timeout_s, self.timeout_s)))

    def _read_chain(self, system: SystemRef) -> ChainReading:
        client = self._client_for()  # a new client per reading: a node that moved or came back is found again
        # one block for everything shown together: the holders' standing and the block time it is valid at
        view = SolarProperty(client, system.contract, system.system_id).snapshot()
        assert view.block is not None
        holders: dict[str, dict[str, Any]] = {}
        for h in view.holders():
            holders[h.account.lower()] = {
                "account": h.account, "share_bps": h.share_bps, "status": h.status,
                "holding_value_wei": str(h.holding_value_wei), "equity_paid_wei": str(h.equity_paid_wei),
                "debt_wei": str(h.debt_wei), "prepaid_wei": str(h.prepaid_wei),
                "in_good_standing": h.in_good_standing,
                "next_due": utc_iso(h.next_due_time) if h.next_due_time else None,
            }
        return ChainReading((system.contract, system.system_id), view.block, view.block_timestamp(), self._clock(),
                            holders)

    def holders(self) -> dict[str, Any]:
        """Every holder of the hub's system: chain values (or the last known ones) and the latest decision."""
        with self.factory() as session:
            row = latest_system(session)
            system = SystemRef.of(row) if row is not None else None
            latest: dict[str, SupplyDecision] = {}
            if system is not None:
                newest = (select(SupplyDecision.party, func.max(SupplyDecision.id))
                          .where(SupplyDecision.system_ref == system.ref).group_by(SupplyDecision.party))
                ids = [i for _p, i in session.execute(newest)]
                if ids:
                    latest = {d.party: d for d in session.scalars(select(SupplyDecision)
                                                                  .where(SupplyDecision.id.in_(ids)))}
        if system is None:
            return {"source": "none", "error": "no system yet: the settlement has not registered or found one",
                    "system": None, "holders": []}
        error = None
        with self._lock:  # one chain reading at a time, however many pages poll
            reading = self._last
            if reading is not None and reading.system != (system.contract, system.system_id):
                reading = self._last = None  # another system now (a reset development chain): forget the old one
            now = self._clock()
            fresh = reading is not None and now - reading.read_at < self.cache_s
            if self._config_error is not None:
                error = self._config_error
            elif self._collector is not None:  # the collector reads the chain: a page never waits for it
                error = self._failed[1] if self._failed is not None else None
            elif not fresh and self._failed is not None and now - self._failed[0] < self.cache_s:
                error = self._failed[1]
            elif not fresh:
                error = self._read_locked(system, now)
                reading = self._last
        out = []
        for party, account in system.holders.items():
            onchain = reading.holders.get(account.lower()) if reading is not None else None
            stored = latest.get(party)
            item: dict[str, Any] = {"party": party, "account": account}
            if onchain is not None:
                item.update(onchain)
            elif stored is not None:  # the standing the last supply decision was based on
                item.update({"status": stored.status, "debt_wei": stored.debt_wei, "prepaid_wei": stored.prepaid_wei,
                             "next_due": utc_iso(stored.next_due) if stored.next_due else None,
                             "in_good_standing": None, "share_bps": None, "holding_value_wei": None,
                             "equity_paid_wei": None})
            item["decision"] = _decision_json(stored) if stored is not None else None
            out.append(item)
        if error is None:
            source = "chain"
        else:
            source = "cache" if reading is not None else "stored"
        result: dict[str, Any] = {"source": source, "error": error, "system": {
            "chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id},
            "holders": out}
        if reading is not None:
            result.update({"block": reading.block, "block_time": utc_iso(reading.block_time),
                           "read_at": utc_iso(reading.read_at)})
        return result
