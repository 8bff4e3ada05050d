"""The states the bridge publishes: energy and power from the hub's readings, standing from the chain.

Energy totals are the sums of the readings' `delta_wh` (the energy manager's register rules: never negative, a
gap's energy on the reading after it): the numbers settlement bills, and never decreasing, which is what
Home Assistant's `total_increasing` requires. Why incremental (`Totals`): a year of readings is millions of rows;
summing them all every ten seconds would keep a Pi's SD card busy, so the sums are taken once at start and then
only over the readings stored since (by id).

Standing (debt, deposit, equity paid, good standing) is read from the chain with `eth_call` at one block
(settlement.solar_property), and only when the chain has a block the last reading did not see; the supply
decision is the settlement's latest stored decision per holder.
When the chain cannot be read, the last values read stay published and the error is returned to be shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from home_assistant.discovery import SYSTEM
from scb.errors import ChainRefused, TransportError
from settlement.models import SupplyDecision
from settlement.system import SystemRef

WEI_PER_ETH = 10**18
#: A meter's power is shown while its newest reading is younger than this (community ms): a silent meter's last
#: power would otherwise be shown as if it were still drawing it.
POWER_MAX_AGE_MS = 15 * 60_000


@dataclass
class Totals:
    """Running sums of `delta_wh` per (circuit, party) and the newest power per meter, advanced by id."""

    last_id: int = 0
    wh: dict[tuple[str, str], int] = field(default_factory=dict)
    #: meter -> (circuit, party, power_w, ts_ms)
    power: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)

    def advance(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            newest = session.scalar(select(func.max(StoredReading.id))) or 0
            if newest <= self.last_id:
                return
            window = (StoredReading.id > self.last_id) & (StoredReading.id <= newest)
            for circuit, party, wh in session.execute(
                    select(StoredReading.circuit, StoredReading.party, func.sum(StoredReading.delta_wh))
                    .where(window).group_by(StoredReading.circuit, StoredReading.party)):
                self.wh[(circuit, party)] = self.wh.get((circuit, party), 0) + int(wh or 0)
            latest = (select(StoredReading.meter, func.max(StoredReading.id).label("id")).where(window)
                      .group_by(StoredReading.meter).subquery())
            for r in session.scalars(select(StoredReading).join(latest, StoredReading.id == latest.c.id)):
                self.power[r.meter] = (r.circuit, r.party, int(r.power_w), int(r.ts_ms))
            self.last_id = newest

    def energy_kwh(self, circuit: str, party: str | None = None) -> float:
        wh = sum(v for (c, p), v in self.wh.items() if c == circuit and (party is None or p == party))
        return round(wh / 1000, 3)

    def power_w(self, circuit: str, party: str | None = None) -> int | None:
        found = [(w, ts) for c, p, w, ts in self.power.values() if c == circuit and (party is None or p == party)]
        if not found:
            return None
        newest = max(ts for _w, ts in found)
        return sum(w for w, ts in found if newest - ts <= POWER_MAX_AGE_MS)


def _eth(wei: int | None) -> float | None:
    return None if wei is None else round(wei / WEI_PER_ETH, 9)


class StateReader:
    """Builds the state JSON of every device; `client_for()` gives a chain client (None: no chain reading)."""

    def __init__(self, factory: sessionmaker[Session], client_for: Any) -> None:
        self.factory = factory
        self.client_for = client_for
        self.totals = Totals()
        #: party -> the standing last read from the chain
        self.standing: dict[str, dict[str, Any]] = {}
        #: (system ref, block) `standing` was read at: the same block answers the same, so it is not asked again
        self._read_at: tuple[int, int] | None = None

    def read_chain(self, system: SystemRef) -> str | None:
        """Refresh `standing` from the chain; the error to show when it cannot be read."""
        from settlement.solar_property import SolarProperty

        try:
            view = SolarProperty(self.client_for(), system.contract, system.system_id).snapshot()
            assert view.block is not None
            read_at = (system.ref, view.block)
            if read_at == self._read_at:
                # no new block since the last reading (a dev chain mines only on a transaction): one
                # eth_blockNumber instead of holderList and a holderInfo per holder every interval_s
                return None
            party_of = system.party_of
            for h in view.holders():
                party = party_of.get(h.account.lower())
                if party is not None:
                    self.standing[party] = {"debt": _eth(h.debt_wei), "deposit": _eth(h.prepaid_wei),
                                            "equity": _eth(h.equity_paid_wei),
                                            "good_standing": "ON" if h.in_good_standing else "OFF",
                                            "status": h.status}
            self._read_at = read_at
        except (TransportError, ChainRefused) as exc:
            return f"the chain cannot be read: {exc}"
        return None

    def decisions(self, system: SystemRef) -> dict[str, str]:
        with self.factory() as session:
            newest = (select(SupplyDecision.party, func.max(SupplyDecision.id))
                      .where(SupplyDecision.system_ref == system.ref).group_by(SupplyDecision.party))
            ids = [i for _p, i in session.execute(newest)]
            return {d.party: d.decision for d in session.scalars(select(SupplyDecision)
                                                                 .where(SupplyDecision.id.in_(ids)))} if ids else {}

    def states(self, system: SystemRef | None) -> tuple[dict[str, dict[str, Any]], str | None]:
        """device -> its state JSON, and the chain's error if any."""
        self.totals.advance(self.factory)
        t = self.totals
        out: dict[str, dict[str, Any]] = {SYSTEM: {
            "generation": t.energy_kwh("generation"), "generation_power": t.power_w("generation"),
            "grid_import": t.energy_kwh("grid_import"), "grid_export": t.energy_kwh("grid_export")}}
        error = None
        if system is not None:
            error = self.read_chain(system)
            decisions = self.decisions(system)
            for party in system.holders:
                out[party] = {"energy": t.energy_kwh("consumption", party), "power": t.power_w("consumption", party),
                              "supply": decisions.get(party),
                              **self.standing.get(party, {"debt": None, "deposit": None, "equity": None,
                                                          "good_standing": None})}
        return out, error
