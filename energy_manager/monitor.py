"""The EnergyMonitor: one sample of every meter per tick, stored and handed to the publisher atomically.

A sample (`sample()`) reads the devices and numbers a reading per meter that reported something new (sequence
number = previous + 1, canonical bytes, digest, energy delta and flags from `energy_manager.registers`); it
touches no database. `store()` then writes everything not yet stored in one database transaction that
1. inserts the readings and moves each meter's head (`energy_meter_heads`) to its newest one, which fails if
   the head is not at the seq before (another writer): that keeps (hub, meter, seq) unique;
2. adds the input counters (bad lines, values out of range, clock jumps, devices lost);
3. saves device checkpoints (the simulator's state) and the caller's state (the clock anchor);
4. batches every publish window that has closed into MAM message(s) with `mam_client.outbox.enqueue` and links
   each reading to the message that carries it.
So after a crash the database holds whole samples only: no reading without its sequence number, no message
without its readings, no reading in two messages. Sequence numbers come from the committed heads, so a restart
continues exactly where the last commit ended.

When the database cannot take a sample (locked beyond the busy timeout, disk full), `store()` raises and the
sample stays in memory, numbered; the next `store()` writes it with the samples taken since, in order, so a
reading survives a lock and is stored exactly once. The memory is bounded (`MAX_PENDING_READINGS`): beyond it new
samples are not kept, and a `not_stored` counter says so; the meters' cumulative registers make the first
reading after the outage carry the energy of the samples that were not kept (flagged `gap` if the outage was
long), so energy is never lost, only time resolution. Pending samples die with the process (kill -9, power cut);
a restart numbers on from the committed heads, so nothing is numbered twice.

Bad input never escapes a sample: it is logged with the raw line, counted, and the other meters go on.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.drivers.base import Device, DeviceSample, InputEvent
from energy_manager.drivers.serial_line import show_raw
from energy_manager.message import encode_window
from energy_manager.models import EnergyState, InputCounter, MeterHead, StoredReading
from energy_manager.reading import MAX_SAFE_INT, Reading, ReadingError, parse_canonical
from energy_manager.registers import GAP, RESET, SPIKE, ClockBackwards, RegisterState, energy_delta
from energy_manager.settings import EnergySettings, MeterSettings
from mam_client.crypto.trits import ascii_to_trytes
from mam_client.outbox import enqueue
from scb.db import load_json_value, save_json_value, transaction
from scb.errors import DatabaseUnavailable
from scb.loop import as_database_error, is_transient
from scb.timefmt import utc_iso_ms

log = logging.getLogger("energy_manager.monitor")

OUT_OF_RANGE = "out_of_range"
MISSING_VALUE = "missing_value"
CLOCK_BACKWARDS = "clock_backwards"
CLOCK_JUMP = "clock_jump"
DRIVER_ERROR = "driver_error"
#: a sample the database could not take while the memory for pending samples was full (source "database")
NOT_STORED = "not_stored"
#: Readings kept in memory while the database cannot take them. Why this many: a held reading costs about 1-2 KB,
#: so the bound is 10-20 MB, affordable on a Pi; it is about a day of the demo community (7 meters) at one sample
#: a minute, longer than any lock, and a database that is gone longer needs an operator anyway. Beyond it the
#: registers carry the energy (see the module docstring).
MAX_PENDING_READINGS = 10_000
#: Input events kept while the database cannot take them. Why: their counts are diagnostics, not data.
MAX_PENDING_EVENTS = 1_000
#: counters that only inform (the reading is stored, flagged)
FLAG_EVENTS = {GAP: "gap", RESET: "reset", SPIKE: "spike"}


def new_salt() -> str:
    """16 bytes from the OS's CSPRNG: a guessable salt would let anyone brute-force consumption from digests."""
    return secrets.token_hex(16)


class StaleCursor(RuntimeError):
    """A meter's head in the database is not where this monitor left it: another writer stored readings of the
    meter (two energy managers on one database), so this one's numbering would repeat a seq. Not transient: the
    sample's transaction is rolled back and the process exits, to be restarted from the heads as they are."""


#: Moves a meter's head to the reading stored with it, only from the seq before: a head elsewhere matches no row.
ADVANCE_HEAD = text("UPDATE energy_meter_heads SET seq = :seq, ts_ms = :ts_ms, register_wh = :register_wh, "
                    "party = :party WHERE hub = :hub AND meter = :meter AND seq = :seq - 1")


@dataclass
class MeterCursor:
    """The meter's last committed reading: what the next one is numbered and measured against."""

    seq: int = 0
    last: RegisterState | None = None


@dataclass
class TickReport:
    """What one `store()` (or `tick()`) wrote: every reading stored, oldest first, and the messages enqueued."""

    ts_ms: int
    readings: list[Reading] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    events: int = 0
    committed: bool = False


@dataclass
class _Staged:
    """A numbered reading waiting for its transaction."""

    meter: MeterSettings
    reading: Reading
    delta_wh: int
    interval_ms: int | None
    flags: str


class EnergyMonitor:
    """Samples the devices and stores readings; `sample()` + `store()` is one tick, the loop lives in `service`."""

    def __init__(
        self,
        settings: EnergySettings,
        factory: sessionmaker[Session],
        devices: dict[str, Device],
        *,
        salt: Callable[[], str] = new_salt,
        max_pending_readings: int = MAX_PENDING_READINGS,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.devices = devices
        self.salt = salt
        self.max_pending_readings = max_pending_readings
        #: per meter, the newest reading numbered (stored, or pending in memory): what the next is measured against
        self.cursors: dict[str, MeterCursor] = {}
        self._pending: list[_Staged] = []
        self._pending_events: list[tuple[str, InputEvent]] = []
        self._pending_state: dict[str, dict] = {}
        self._pending_samples = 0
        self._pending_now: int | None = None
        self._not_kept = 0  # samples not kept since the last store (the memory was full)
        self._newest: tuple[int, dict[str, MeterCursor], int] | None = None
        self.load_cursors()

    # -- state ------------------------------------------------------------------------------------------------
    def load_cursors(self) -> None:
        """Read each meter's last committed reading (at start): its head."""
        with self.factory() as session:
            heads = {head.meter: MeterCursor(head.seq, RegisterState(head.ts_ms, head.register_wh))
                     for head in session.scalars(select(MeterHead).where(MeterHead.hub == self.settings.hub_id))}
        self.cursors = {meter_id: heads.get(meter_id, MeterCursor()) for meter_id in self.settings.meters}

    def newest_ts_ms(self) -> int | None:
        stamps = [c.last.ts_ms for c in self.cursors.values() if c.last is not None]
        return max(stamps) if stamps else None

    @property
    def pending_samples(self) -> int:
        """Samples taken and waiting for the database (0 while it takes every sample)."""
        return self._pending_samples

    # -- one tick ---------------------------------------------------------------------------------------------
    def tick(self, now_ms: int, extra_events: Iterable[tuple[str, InputEvent]] = (),
             extra_state: dict[str, dict] | None = None) -> TickReport:
        """`sample()` then `store()`. A database that cannot take the sample (a transient error: locked, full)
        is logged and the sample stays pending (`committed` is False); the next tick stores it first."""
        self.sample(now_ms, extra_events, extra_state)
        try:
            return self.store()
        except DatabaseUnavailable as exc:
            log.error("could not store the sample at %s (%s); %d sample(s) waiting for the next try",
                      utc_iso_ms(now_ms), exc, self._pending_samples)
            return TickReport(ts_ms=now_ms)

    def sample(self, now_ms: int, extra_events: Iterable[tuple[str, InputEvent]] = (),
               extra_state: dict[str, dict] | None = None) -> int:
        """Read every device at community time `now_ms` and number a reading per meter that reported something
        new; nothing is written (`store()` does). Never raises for bad input or an unavailable device.
        `extra_state` is saved to `energy_state` with the sample (the clock anchor). Returns the readings kept."""
        events: list[tuple[str, InputEvent]] = list(extra_events)
        samples: dict[str, DeviceSample] = {}
        for name, device in self.devices.items():
            try:
                sample = device.read(now_ms)
            except Exception as exc:  # noqa: BLE001 - a driver bug must not stop the other devices
                log.error("meter device %s failed: %s: %s", name, type(exc).__name__, exc)
                log.debug("meter device %s failure", name, exc_info=True)
                events.append((name, InputEvent(DRIVER_ERROR, f"{type(exc).__name__}: {exc}")))
                sample = None
            if sample is not None:
                samples[name] = sample
            events.extend((name, e) for e in device.take_events())

        # what the newest sample changes, so that it can be given up if the database fails and memory is full
        self._newest = (len(self._pending), dict(self.cursors), now_ms)
        staged: list[_Staged] = []
        for meter in self.settings.meters.values():
            sample = samples.get(meter.device)
            if sample is None:
                continue
            made = self._reading(meter, sample, events)
            if made is not None:
                staged.append(made)
                self.cursors[meter.id] = MeterCursor(made.reading.seq,
                                                     RegisterState(made.reading.ts_ms, made.reading.register_wh))
        self._pending.extend(staged)
        self._pending_events = [*self._pending_events, *events][-MAX_PENDING_EVENTS:]
        self._pending_state.update(extra_state or {})
        self._pending_samples += 1
        self._pending_now = now_ms if self._pending_now is None else max(self._pending_now, now_ms)
        return len(staged)

    def store(self) -> TickReport:
        """Write every pending sample in one transaction (nothing to do when none is pending).

        A database error propagates (the caller's loop backs off and retries) and leaves the samples pending;
        they are written, in order and once, by the next `store()` that succeeds."""
        report = TickReport(ts_ms=self._pending_now if self._pending_now is not None else 0)
        if self._pending_now is None:
            return report
        staged, events = self._pending, self._pending_events
        try:
            with transaction(self.factory) as session:
                for item in staged:
                    self._store(session, item.reading, item.delta_wh, item.interval_ms, item.flags)
                self._advance_heads(session, [item.reading for item in staged])
                self._count(session, events)
                self._checkpoint(session)
                for key, value in self._pending_state.items():
                    save_state(session, key, value)
                report.messages = self.batch_closed_windows(session, self._pending_now)
        except Exception as exc:  # noqa: BLE001 - only the transient ones are the database being unavailable
            if not is_transient(exc):
                raise
            self._give_up_newest_if_full()
            raise as_database_error(exc) from exc
        if self._pending_samples > 1:
            log.info("the database took %d samples kept in memory (%d readings)", self._pending_samples, len(staged))
        self._pending, self._pending_events, self._pending_state = [], [], {}
        self._pending_samples, self._pending_now, self._not_kept, self._newest = 0, None, 0, None
        report.readings = [item.reading for item in staged]
        report.events = len(events)
        report.committed = True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed %s", json.dumps({
                "ts_ms": report.ts_ms, "seq": {r.meter: r.seq for r in report.readings},
                "messages": report.messages,
            }, sort_keys=True))
        return report

    def _give_up_newest_if_full(self) -> None:
        """Past `max_pending_readings`, drop the newest sample's readings and give their numbers back: the
        registers carry their energy into the next reading that is stored (module docstring)."""
        if len(self._pending) <= self.max_pending_readings or self._newest is None:
            return
        start, cursors, now_ms = self._newest
        self._newest = None
        if not self._not_kept:
            log.error("the database has not taken a sample for a while and %d readings are waiting in memory: new "
                      "samples are not kept until it is back (the next stored reading carries their energy)", start)
        self._not_kept += 1
        self._pending_samples -= 1
        del self._pending[start:]
        self.cursors = cursors
        self._pending_events.append(("database", InputEvent(
            NOT_STORED, f"sample at {utc_iso_ms(now_ms)} not kept: {start} readings were already waiting")))

    def _reading(self, meter: MeterSettings, sample: DeviceSample,
                 events: list[tuple[str, InputEvent]]) -> _Staged | None:
        raw = sample.raw

        def bad(kind: str, detail: str) -> None:
            shown = f": {show_raw(raw)}" if raw is not None else ""
            log.warning("meter %s: %s%s", meter.id, detail, shown)
            events.append((meter.id, InputEvent(kind, detail, raw)))

        value = sample.values.get(meter.register)
        if value is None:
            bad(MISSING_VALUE, f"no value {meter.register} in the device's data")
            return None
        power = sample.values.get(meter.power, 0.0) if meter.power else 0.0
        if meter.power and meter.power not in sample.values:
            bad(MISSING_VALUE, f"no value {meter.power} in the device's data")
            return None
        if not (math.isfinite(value) and 0 <= value <= MAX_SAFE_INT):
            bad(OUT_OF_RANGE, f"register {meter.register}={value!r} Wh is outside 0..2**53-1")
            return None
        if not (math.isfinite(power) and abs(power) <= meter.max_power_w):
            bad(OUT_OF_RANGE, f"power {meter.power}={power!r} W is beyond the meter's {meter.max_power_w:g} W")
            return None
        register = math.floor(value)
        cursor = self.cursors.get(meter.id, MeterCursor())
        try:
            delta = energy_delta(cursor.last, sample.ts_ms, register, max_power_w=meter.max_power_w,
                                 gap_after_ms=self.settings.gap_after_ms)
        except ClockBackwards as exc:
            bad(CLOCK_BACKWARDS, exc.message)
            return None
        try:
            reading = Reading(
                hub=self.settings.hub_id, meter=meter.id, party=meter.party, circuit=meter.circuit,
                ts_ms=sample.ts_ms, register_wh=register, power_w=round(power), seq=cursor.seq + 1, salt=self.salt(),
            )
        except ReadingError as exc:  # e.g. a clock outside 2000..2099 (a Pi without RTC booting in 1970)
            bad(OUT_OF_RANGE, exc.message)
            return None
        for flag in delta.flags:
            if flag in FLAG_EVENTS:
                detail = (f"{FLAG_EVENTS[flag]}: register {cursor.last.register_wh if cursor.last else '-'} -> "
                          f"{register} Wh over {delta.interval_ms} ms, counted {delta.delta_wh} Wh")
                (log.warning if flag != GAP else log.info)("meter %s: %s", meter.id, detail)
                events.append((meter.id, InputEvent(FLAG_EVENTS[flag], detail, raw)))
        return _Staged(meter, reading, delta.delta_wh, delta.interval_ms, delta.flags_text)

    def _store(self, session: Session, reading: Reading, delta_wh: int, interval_ms: int | None, flags: str) -> None:
        canonical = reading.canonical()
        window = self.settings.publish_window_ms
        session.add(StoredReading(
            hub=reading.hub, meter=reading.meter, seq=reading.seq, party=reading.party, circuit=reading.circuit,
            ts_ms=reading.ts_ms, register_wh=reading.register_wh, power_w=reading.power_w, salt=reading.salt,
            canonical=canonical, digest=reading.digest().hex(), delta_wh=delta_wh, interval_ms=interval_ms,
            flags=flags, window_start_ms=reading.ts_ms // window * window,
        ))

    @staticmethod
    def _advance_heads(session: Session, readings: list[Reading]) -> None:
        """Move each meter's head along its readings, oldest first: a first reading (seq 1) creates the head, any
        other moves it from seq - 1. A head that is already there (seq 1) or elsewhere raises, rolling back."""
        rows = [{"hub": r.hub, "meter": r.meter, "party": r.party, "seq": r.seq, "ts_ms": r.ts_ms,
                 "register_wh": r.register_wh} for r in readings]
        firsts = [row for row in rows if row["seq"] == 1]
        moves = [row for row in rows if row["seq"] != 1]
        if firsts:  # before the moves: a meter's seq 2 may be in the same transaction as its seq 1
            session.execute(insert(MeterHead), firsts)  # a head already there: IntegrityError, not transient
        if moves:
            moved = session.execute(ADVANCE_HEAD, moves).rowcount
            if moved != len(moves):
                raise StaleCursor(f"{len(moves) - moved} of {len(moves)} meter heads were not at the seq before "
                                  "this sample's: another writer stores readings in this database")

    def _count(self, session: Session, events: list[tuple[str, InputEvent]]) -> None:
        if not events:
            return
        grouped: dict[tuple[str, str], list[InputEvent]] = defaultdict(list)
        for source, event in events:
            grouped[(source[:64], event.kind[:32])].append(event)
        now = datetime.now(timezone.utc)
        for (source, kind), items in grouped.items():
            last = items[-1]
            detail = last.detail + (f" | raw {show_raw(last.raw)}" if last.raw is not None else "")
            row = session.execute(
                select(InputCounter).where(InputCounter.source == source, InputCounter.kind == kind)
            ).scalar_one_or_none()
            if row is None:
                session.add(InputCounter(source=source, kind=kind, count=len(items), last_at=now,
                                         last_detail=detail[:500]))
            else:
                row.count += len(items)
                row.last_at = now
                row.last_detail = detail[:500]

    def _checkpoint(self, session: Session) -> None:
        for name, device in self.devices.items():
            state = device.checkpoint()
            if state is not None:
                save_state(session, f"device:{name}", state)

    # -- publish windows --------------------------------------------------------------------------------------
    def batch_closed_windows(self, session: Session, now_ms: int) -> list[int]:
        """Enqueue one MAM message (or several parts) per closed publish window; return the message ids."""
        window = self.settings.publish_window_ms
        current = now_ms // window * window
        rows = session.execute(
            select(StoredReading)
            .where(StoredReading.hub == self.settings.hub_id, StoredReading.message_id.is_(None),
                   StoredReading.window_start_ms < current)
            .order_by(StoredReading.window_start_ms, StoredReading.ts_ms, StoredReading.meter, StoredReading.seq)
        ).scalars().all()
        by_window: dict[int, list[StoredReading]] = defaultdict(list)
        for row in rows:
            by_window[row.window_start_ms].append(row)
        ids: list[int] = []
        for start, window_rows in sorted(by_window.items()):
            readings = [parse_canonical(row.canonical) for row in window_rows]
            row_of = {(r.meter, r.seq): row for r, row in zip(readings, window_rows)}
            end = start + window
            window_ids = []
            for body, carried in encode_window(self.settings.hub_id, start, end, readings,
                                               self.settings.max_message_bytes):
                message = enqueue(session, self.settings.channel, ascii_to_trytes(body.decode("ascii")))
                for r in carried:
                    row_of[(r.meter, r.seq)].message_id = message.id
                window_ids.append(message.id)
            log.info("window %s: %d readings queued for publication in message %s", utc_iso_ms(start), len(readings),
                     ", ".join(str(i) for i in window_ids))
            ids.extend(window_ids)
        return ids


def load_state(session: Session, key: str) -> dict | None:
    return load_json_value(session, EnergyState, key)


def save_state(session: Session, key: str, value: dict) -> None:
    save_json_value(session, EnergyState, key, value)
