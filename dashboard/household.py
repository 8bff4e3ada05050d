"""What a household's own page (`/holder/<party>`) shows: its standing, its bills with the readings behind them,
its payments and deposits, and the readings whose proofs it can download.

Standing is the holders' board's (dashboard.data.HolderBoard: `holderInfo` at one block, or the last known
values). Bills are `hub.export.bill_rows` (the hub's settled periods, amounts from the contract's `Billed`
events), payments `hub.ledger.payments` (the contract's `Paid`, `Deposited`, ... events): exactly what
`scb export bills --holder` writes. The chain's event logs are read at most every `cache_s` per holder, so a
page polling every few seconds costs one `eth_getLogs` set per `cache_s`, not one per poll; when the chain
cannot be read, the bills are shown from the hub's own record (no amounts) with the error, and the payments
from the last reading, if any.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from mam_client.models import OutboxMessage
from scb.errors import ChainRefused, ConfigError, TransportError
from scb.timefmt import utc_iso, utc_iso_ms
from settlement.models import SETTLED, SettlementPeriod
from settlement.system import SystemRef, newest_system

MAX_READINGS = 500


@dataclass
class LedgerReading:
    """One reading of a holder's bills and payments from the chain."""

    system: tuple[str, int]
    read_at: float
    bills: list[dict[str, Any]]
    payments: list[dict[str, Any]]


class HouseholdPages:
    """The data of `/api/holder`; `client_for()` builds a chain client (the holders' board's, short timeout)."""

    def __init__(self, factory: sessionmaker[Session], client_for: Callable[[], Any], cache_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.factory = factory
        self.client_for = client_for
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, LedgerReading] = {}
        self._failed: dict[str, tuple[float, str]] = {}

    def system(self) -> SystemRef | None:
        return newest_system(self.factory)

    def ledger(self, system: SystemRef, party: str) -> tuple[LedgerReading | None, str | None]:
        """The holder's bills and payments (fresh, cached or the last known) and the error of the chain, if any."""
        from hub.export import bill_rows
        from hub.ledger import payments, reader_client

        key = (system.contract, system.system_id)
        with self._lock:
            now = self._clock()
            cached = self._cache.get(party)
            if cached is not None and cached.system != key:
                cached = None
            if cached is not None and now - cached.read_at < self.cache_s:
                return cached, None
            failed = self._failed.get(party)
            if failed is not None and now - failed[0] < self.cache_s:
                return cached, failed[1]
            try:
                client = reader_client(self.client_for(), self.factory)
                reading = LedgerReading(key, now, bill_rows(self.factory, client, party),
                                        payments(client, system, system.holders[party]))
            except (TransportError, ChainRefused, ConfigError) as exc:
                self._failed[party] = (now, str(exc))
                return cached, str(exc)
            self._cache[party] = reading
            self._failed.pop(party, None)
            return reading, None

    def page(self, party: str, standing: dict[str, Any]) -> dict[str, Any] | None:
        """Everything the page shows about `party`; None for a party that is not a holder of the hub's system."""
        from hub.export import bill_rows

        system = self.system()
        if system is None or party not in system.holders:
            return None
        holder = next((h for h in standing.get("holders", []) if h.get("party") == party), None)
        reading, error = self.ledger(system, party)
        bills = reading.bills if reading is not None else bill_rows(self.factory, None, party)
        counts = self._reading_counts(party)
        for bill in bills:
            bill["readings"] = counts.get(int(bill["period_id"]), 0)
        return {
            "party": party, "account": system.holders[party],
            "system": {"chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id},
            "standing": holder, "standing_source": standing.get("source"), "standing_error": standing.get("error"),
            "block_time": standing.get("block_time"),
            "bills": list(reversed(bills)),  # newest first, as every list of the dashboard
            "payments": [{**p, "time": utc_iso(p["time_s"])} for p in reversed(reading.payments)]
            if reading is not None else [],
            "ledger_error": error,
            "ledger_read_at": utc_iso(reading.read_at) if reading is not None else None,
        }

    def _reading_counts(self, party: str) -> dict[int, int]:
        with self.factory() as session:
            rows = session.execute(select(StoredReading.period, func.count(StoredReading.id))
                                   .where(StoredReading.party == party, StoredReading.period.is_not(None))
                                   .group_by(StoredReading.period))
            return {int(p): int(n) for p, n in rows}


def period_readings(factory: sessionmaker[Session], party: str, period_id: int, limit: int) -> dict[str, Any]:
    """The holder's readings in settled period `period_id` of the hub's system, oldest first: what its bill was
    computed from, each with whether its proof can be exported (the period is settled)."""
    system = newest_system(factory)
    with factory() as session:
        state = None
        if system is not None:
            state = session.scalar(select(SettlementPeriod.state).where(
                SettlementPeriod.system_ref == system.ref, SettlementPeriod.period_id == period_id))
        rows = session.execute(
            select(StoredReading, OutboxMessage.address)
            .outerjoin(OutboxMessage, OutboxMessage.id == StoredReading.message_id)
            .where(StoredReading.party == party, StoredReading.period == period_id)
            .order_by(StoredReading.ts_ms, StoredReading.id).limit(limit))
        readings = [{"id": r.id, "meter": r.meter, "seq": r.seq, "time": utc_iso_ms(r.ts_ms), "ts_ms": r.ts_ms,
                     "register_wh": r.register_wh, "delta_wh": r.delta_wh, "power_w": r.power_w, "flags": r.flags,
                     "digest": r.digest, "address": address} for r, address in rows]
    return {"party": party, "period_id": period_id, "settled": state == SETTLED, "readings": readings}
