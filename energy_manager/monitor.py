"""The EnergyMonitor: one sample of every meter per tick, stored and handed to the publisher atomically.

Each tick is one database transaction that
1. stores a reading per meter that reported something new (sequence number = previous + 1, canonical bytes,
   digest, energy delta and flags from `energy_manager.registers`);
2. adds the tick's input counters (bad lines, values out of range, clock jumps, devices lost);
3. saves device checkpoints (the simulator's state);
4. batches every publish window that has closed into MAM message(s) with `mam_client.outbox.enqueue` and links
   each reading to the message that carries it.
So after a crash the database holds whole ticks only: no reading without its sequence number, no message
without its readings, no reading in two messages. Sequence numbers come from the committed rows, so a restart
continues exactly where the last commit ended.

Bad input never escapes a tick: it is logged with the raw line, counted, and the other meters go on.
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

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.drivers.base import Device, DeviceSample, InputEvent
from energy_manager.drivers.serial_line import show_raw
from energy_manager.message import encode_window
from energy_manager.models import EnergyState, InputCounter, StoredReading
from energy_manager.reading import MAX_SAFE_INT, Reading, ReadingError, parse_canonical
from energy_manager.registers import GAP, RESET, SPIKE, ClockBackwards, RegisterState, energy_delta
from energy_manager.settings import EnergySettings, MeterSettings
from mam_client.crypto.trits import ascii_to_trytes
from mam_client.outbox import enqueue
from scb.db import load_json_value, save_json_value
from scb.db import transaction

log = logging.getLogger("energy_manager.monitor")

OUT_OF_RANGE = "out_of_range"
MISSING_VALUE = "missing_value"
CLOCK_BACKWARDS = "clock_backwards"
CLOCK_JUMP = "clock_jump"
DRIVER_ERROR = "driver_error"
#: counters that only inform (the reading is stored, flagged)
FLAG_EVENTS = {GAP: "gap", RESET: "reset", SPIKE: "spike"}


def new_salt() -> str:
    """16 bytes from the OS's CSPRNG: a guessable salt would let anyone brute-force consumption from digests."""
    return secrets.token_hex(16)


@dataclass
class MeterCursor:
    """The meter's last committed reading: what the next one is numbered and measured against."""

    seq: int = 0
    last: RegisterState | None = None


@dataclass
class TickReport:
    ts_ms: int
    readings: list[Reading] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    events: int = 0
    committed: bool = False


class EnergyMonitor:
    """Samples the devices and stores readings; `tick()` is one sample, `run()` lives in `service`."""

    def __init__(
        self,
        settings: EnergySettings,
        factory: sessionmaker[Session],
        devices: dict[str, Device],
        *,
        salt: Callable[[], str] = new_salt,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.devices = devices
        self.salt = salt
        self.cursors: dict[str, MeterCursor] = {}
        self._carry: list[tuple[str, InputEvent]] = []  # events of a tick whose commit failed
        self.load_cursors()

    # -- state ------------------------------------------------------------------------------------------------
    def load_cursors(self) -> None:
        """Read each meter's last committed reading (after a start, or after a failed commit)."""
        hub = self.settings.hub_id
        cursors: dict[str, MeterCursor] = {}
        with self.factory() as session:
            for meter_id in self.settings.meters:
                row = session.execute(
                    select(StoredReading.seq, StoredReading.ts_ms, StoredReading.register_wh)
                    .where(StoredReading.hub == hub, StoredReading.meter == meter_id)
                    .order_by(StoredReading.seq.desc())
                    .limit(1)
                ).first()
                cursors[meter_id] = (
                    MeterCursor(row.seq, RegisterState(row.ts_ms, row.register_wh)) if row else MeterCursor()
                )
        self.cursors = cursors

    def newest_ts_ms(self) -> int | None:
        stamps = [c.last.ts_ms for c in self.cursors.values() if c.last is not None]
        return max(stamps) if stamps else None

    # -- one tick ---------------------------------------------------------------------------------------------
    def tick(self, now_ms: int, extra_events: Iterable[tuple[str, InputEvent]] = (),
             extra_state: dict[str, dict] | None = None) -> TickReport:
        """Sample every device at community time `now_ms`, store, batch closed windows. Never raises for bad
        input or an unavailable device; a failed commit is logged and the tick's readings are dropped (their
        sequence numbers are reused by the next tick, so nothing is skipped). `extra_state` is saved to
        `energy_state` in the same transaction (the clock anchor)."""
        report = TickReport(ts_ms=now_ms)
        events: list[tuple[str, InputEvent]] = [*self._carry, *extra_events]
        self._carry = []
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

        staged: list[tuple[MeterSettings, Reading, int, int | None, str]] = []
        for meter in self.settings.meters.values():
            sample = samples.get(meter.device)
            if sample is None:
                continue
            made = self._reading(meter, sample, events)
            if made is not None:
                staged.append(made)

        try:
            with transaction(self.factory) as session:
                for meter, reading, delta_wh, interval_ms, flags in staged:
                    self._store(session, reading, delta_wh, interval_ms, flags)
                self._count(session, events)
                self._checkpoint(session)
                for key, value in (extra_state or {}).items():
                    save_state(session, key, value)
                report.messages = self.batch_closed_windows(session, now_ms)
        except SQLAlchemyError as exc:
            log.error("could not store the sample at %s (%s); it is dropped and the next sample continues",
                      _iso(now_ms), _short(exc))
            self._carry = events[-1000:]
            self.load_cursors_safely()
            return report
        for meter, reading, _delta, _interval, _flags in staged:
            self.cursors[meter.id] = MeterCursor(reading.seq, RegisterState(reading.ts_ms, reading.register_wh))
        report.readings = [r for _m, r, _d, _i, _f in staged]
        report.events = len(events)
        report.committed = True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed %s", json.dumps({
                "ts_ms": now_ms, "seq": {r.meter: r.seq for r in report.readings}, "messages": report.messages,
            }, sort_keys=True))
        return report

    def load_cursors_safely(self) -> None:
        try:
            self.load_cursors()
        except SQLAlchemyError as exc:
            log.error("could not re-read the meters' last readings (%s); will retry", _short(exc))

    def _reading(self, meter: MeterSettings, sample: DeviceSample,
                 events: list[tuple[str, InputEvent]]) -> tuple[MeterSettings, Reading, int, int | None, str] | None:
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
        return meter, reading, delta.delta_wh, delta.interval_ms, delta.flags_text

    def _store(self, session: Session, reading: Reading, delta_wh: int, interval_ms: int | None, flags: str) -> None:
        canonical = reading.canonical()
        window = self.settings.publish_window_ms
        session.add(StoredReading(
            hub=reading.hub, meter=reading.meter, seq=reading.seq, party=reading.party, circuit=reading.circuit,
            ts_ms=reading.ts_ms, register_wh=reading.register_wh, power_w=reading.power_w, salt=reading.salt,
            canonical=canonical, digest=reading.digest().hex(), delta_wh=delta_wh, interval_ms=interval_ms,
            flags=flags, window_start_ms=reading.ts_ms // window * window,
        ))

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
            log.info("window %s: %d readings queued for publication in message %s", _iso(start), len(readings),
                     ", ".join(str(i) for i in window_ids))
            ids.extend(window_ids)
        return ids


def load_state(session: Session, key: str) -> dict | None:
    return load_json_value(session, EnergyState, key)


def save_state(session: Session, key: str, value: dict) -> None:
    save_json_value(session, EnergyState, key, value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
