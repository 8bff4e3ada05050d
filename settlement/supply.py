"""Supply decisions: from each holder's on-chain standing to what the hub does with their portion of the energy.

Every `supply_interval_s` the hub reads each holder's standing with `eth_call` (`holderList`, `holderInfo`: no
gas, no transaction; all at one block, settlement.solar_property). The holder's status is the contract's own
`HolderStatus`; the transaction of a repossession is looked up when its decision is stored. Per holder:

    share repossessed (status on chain)              -> grid    (the portion's energy is sold to the grid, for good)
    owns the share outright                          -> supply
    in good standing (no bill past its due time)     -> supply
    a bill unpaid past the grace period              -> grid    (until the holder pays; then supply again)

Only *changes* (of the decision, or of the holder's status: paying, owned, repossessed) are stored (with the standing they were based on and a reason a person can read) and handed to the
actuator; a decision the actuator failed to apply is retried at the next check. On start the latest decisions are
applied again, because a relay board may have lost power while the hub was down.

Actuators: `LoggingActuator` (the default: decisions are logged and stored, nothing is switched) and
`SerialRelayActuator` (a relay board on a serial port; one ASCII line per change, ``RELAY <party> SUPPLY`` or
``RELAY <party> GRID``, terminated by a newline).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from settlement.chain import ChainClient
from settlement.clock import ChainClock
from settlement.job import Clock
from settlement.models import GRID, SUPPLY, SupplyDecision
from settlement.solar_property import OWNED, PAYING, REPOSSESSED, HolderInfo, SolarProperty  # noqa: F401 (statuses)
from settlement.system import SystemRef
from scb.db import transaction
from scb.errors import ScbError, TransportError
from scb.timefmt import utc_iso

log = logging.getLogger("settlement.supply")


class ActuatorError(TransportError):
    """The actuator could not apply a decision (relay board unplugged...): retried at the next check."""


class Actuator(Protocol):
    kind: str

    def apply(self, party: str, decision: str, reason: str) -> None: ...

    def close(self) -> None: ...


class LoggingActuator:
    """Logs each change; switches nothing (the embedded default, and the demo)."""

    kind = "log"

    def apply(self, party: str, decision: str, reason: str) -> None:
        log.info("supply decision for %s: %s (%s)", party, decision.upper(), reason)

    def close(self) -> None:
        pass


class SerialRelayActuator:
    """A relay board on a serial port: one line `RELAY <party> SUPPLY|GRID\\n` per change."""

    kind = "serial"

    def __init__(self, port: str, baud: int = 9600, timeout_s: float = 2.0,
                 opener: Callable[..., object] | None = None) -> None:
        self.port = port
        self.baud = baud
        self.timeout_s = timeout_s
        self._opener = opener
        self._serial: object | None = None

    def _open(self) -> object:
        import serial

        if self._serial is None:
            opener = self._opener or serial.Serial
            try:
                self._serial = opener(self.port, self.baud, timeout=self.timeout_s, write_timeout=self.timeout_s)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise ActuatorError(f"relay port {self.port} cannot be opened: {exc}") from None
        return self._serial

    def apply(self, party: str, decision: str, reason: str) -> None:
        import serial

        line = f"RELAY {party} {decision.upper()}\n".encode("ascii")
        port = self._open()
        try:
            port.write(line)  # type: ignore[attr-defined]
            port.flush()  # type: ignore[attr-defined]
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise ActuatorError(f"relay port {self.port}: {exc}") from None
        log.info("relay %s: %s -> %s (%s)", self.port, party, decision.upper(), reason)

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing a dead port must not fail the caller
                pass
            self._serial = None


def make_actuator(kind: str, port: str = "", baud: int = 9600) -> Actuator:
    if kind == "serial":
        return SerialRelayActuator(port, baud)
    return LoggingActuator()


@dataclass(frozen=True)
class Standing:
    """One holder's standing as read from the chain."""

    party: str
    account: str
    status: str  # paying | owned | repossessed: the contract's HolderStatus
    prepaid: int
    debt: int
    next_due: int  # 0 without debt
    good: bool

    @classmethod
    def of(cls, party: str, info: HolderInfo) -> Standing:
        return cls(party, info.account, info.status, info.prepaid_wei, info.debt_wei, info.next_due_time,
                   info.in_good_standing)


def decide(standing: Standing, repossessed_tx: str | None = None) -> tuple[str, str]:
    """(decision, reason) for one holder: pure, so the rules are tested without a chain."""
    if standing.status == REPOSSESSED:
        where = f" in transaction {repossessed_tx}" if repossessed_tx else ""
        return GRID, f"share repossessed{where}: its energy is sold to the grid"
    if standing.status == OWNED:
        return SUPPLY, "owns the share outright"
    if standing.good:
        if standing.debt == 0:
            return SUPPLY, f"in good standing: no unpaid bill (deposit {standing.prepaid} wei)"
        return SUPPLY, f"in good standing: {standing.debt} wei due by {utc_iso(standing.next_due)}"
    return GRID, (f"out of good standing: {standing.debt} wei unpaid past its due time {utc_iso(standing.next_due)}; "
                  "the portion is sold to the grid until the holder pays")


class SupplyWatcher:
    """Reads standing, stores changed decisions, drives the actuator. `run()` is the scheduled job."""

    def __init__(self, factory: sessionmaker[Session], client: ChainClient, system: SystemRef, actuator: Actuator,
                 clock: Clock, chain_clock: ChainClock) -> None:
        self.factory = factory
        self.client = client
        self.system = system
        self.actuator = actuator
        self.clock = clock
        self.chain_clock = chain_clock
        self.chain = SolarProperty(client, system.contract, system.system_id)

    def standings(self, view: SolarProperty | None = None) -> list[Standing]:
        """Every holder's standing, in holder order (eth_call only, all at `view`'s block; default: a snapshot
        of the current head)."""
        view = view or self.chain.snapshot()
        party_of = self.system.party_of
        return [Standing.of(party_of.get(h.account.lower(), h.account), h) for h in view.holders()]

    def repossession_of(self, standing: Standing, to_block: int) -> str | None:
        """The transaction that repossessed the holder's share: its latest `Repossessed` event up to `to_block`, in
        one log query filtered by the indexed holder (from the contract's deployment block, in the chunks the
        provider accepts: settlement.logscan). Why only here: it is asked once per repossession, when the
        decision is stored (a stored decision is never written again, so its reason names the transaction now),
        instead of every check scanning new blocks for events and keeping a scan position in the database."""
        events = self.chain.repossessed_events(0, to_block, holder=standing.account)
        if not events:
            log.warning("holder %s is repossessed, but no Repossessed event of it was found up to block %d",
                        standing.party, to_block)
            return None
        tx = events[-1].tx_hash
        log.warning("Repossessed event: holder %s of system %d (transaction %s)", standing.party,
                    self.system.system_id, tx)
        return tx

    def latest(self, session: Session, party: str) -> SupplyDecision | None:
        return session.scalars(select(SupplyDecision).where(SupplyDecision.system_ref == self.system.ref,
                                                            SupplyDecision.party == party)
                               .order_by(SupplyDecision.id.desc()).limit(1)).first()

    def run(self) -> list[SupplyDecision]:
        """One check: returns the decisions that changed (or were applied again after an actuator failure)."""
        now_ms = self.clock.now_ms()
        if now_ms is not None:
            self.chain_clock.before_read(now_ms // 1000)
        view = self.chain.snapshot()  # standing (and a repossession's event) from one block
        block = view.block
        assert block is not None
        changed: list[SupplyDecision] = []
        for standing in self.standings(view):
            decision, reason = decide(standing)
            with self.factory() as session:
                last = self.latest(session, standing.party)
            same = last is not None and last.decision == decision and last.status == standing.status
            if same and last.applied:  # type: ignore[union-attr]
                continue
            if same:
                row_id = last.id  # type: ignore[union-attr]  # not applied yet: retry the actuator on that row
            else:
                if standing.status == REPOSSESSED:
                    decision, reason = decide(standing, self.repossession_of(standing, block))
                with transaction(self.factory) as session:
                    row = SupplyDecision(
                        system_ref=self.system.ref, party=standing.party, account=standing.account,
                        decision=decision, reason=reason, status=standing.status, prepaid_wei=str(standing.prepaid),
                        debt_wei=str(standing.debt), next_due=standing.next_due or None, block_number=block,
                        community_ms=now_ms or 0, actuator=self.actuator.kind, applied=False)
                    session.add(row)
                    session.flush()
                    row_id = row.id
            changed.append(self._apply(row_id, standing.party, decision, reason))
        return changed

    def _apply(self, row_id: int, party: str, decision: str, reason: str) -> SupplyDecision:
        error = None
        try:
            self.actuator.apply(party, decision, reason)
        except ScbError as exc:
            error = str(exc)
            log.error("supply decision for %s (%s) not applied: %s; retrying at the next check", party, decision,
                      error)
        with transaction(self.factory) as session:
            row = session.get(SupplyDecision, row_id)
            assert row is not None
            row.applied = error is None
            row.apply_error = error
            return row

    def reapply(self) -> int:
        """Apply the latest decision of every holder again (after a start); returns how many were applied."""
        count = 0
        with self.factory() as session:
            latest = [self.latest(session, party) for party in self.system.holders]
        for row in latest:
            if row is not None:
                self._apply(row.id, row.party, row.decision, f"restored at start: {row.reason}")
                count += 1
        return count
