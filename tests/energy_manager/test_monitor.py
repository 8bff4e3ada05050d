"""The sampling loop's storage: sequence numbers, reset/gap handling end to end, bad input counted, publish
windows handed to the MAM outbox in the same transaction."""
from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError

import energy_manager.monitor as monitor_module
from energy_manager.drivers.base import Device, DeviceSample
from energy_manager.drivers.simulated import SimulatedDevice
from energy_manager.message import decode_message
from energy_manager.models import InputCounter, MeterHead, StoredReading
from energy_manager.monitor import EnergyMonitor
from energy_manager.reading import ReadingError, verify_reading
from energy_manager.settings import load_energy_settings
from mam_client.crypto.trits import trytes_to_ascii
from mam_client.models import OutboxMessage
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade

T0 = 1_750_464_000_000  # 2025-06-21T00:00:00Z
MIN = 60_000


class ScriptedDevice(Device):
    """Returns the scripted samples in order: a dict of values, None (nothing new), or an exception to raise."""

    driver = "scripted"

    def __init__(self, name: str, script: list[Any]) -> None:
        super().__init__(name)
        self.script = list(script)

    def read(self, now_ms: int) -> DeviceSample | None:
        item = self.script.pop(0) if self.script else None
        if isinstance(item, Exception):
            raise item
        if item is None:
            return None
        ts, values = item
        return DeviceSample(ts_ms=ts, values=values, raw=",".join(f"{k}:{v}" for k, v in values.items()).encode())


@pytest.fixture()
def db(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


#: The busy timeout of the locked-database tests. Why short: the hub waits 30 s for a lock, which is what a lock
#: must outlast before a sample is kept in memory; a test lock outlasts 50 ms without waiting half a minute.
TEST_BUSY_TIMEOUT_MS = 50


@pytest.fixture()
def short_busy_db(tmp_path: Path):
    """The hub's engine (WAL, BEGIN IMMEDIATE) with a busy timeout shortened for the test, and the file's path."""
    path = tmp_path / "scb.sqlite3"
    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA busy_timeout={TEST_BUSY_TIMEOUT_MS}")  # after make_engine's pragmas

    upgrade(engine)
    yield make_sessionmaker(engine), path
    engine.dispose()


def box_config(**energy: Any) -> Config:
    return Config(data={"hub": {"id": "test-hub"}, "energy": {
        "clock_speed": 1,
        "devices": {"box": {"driver": "serial", "port": "/dev/null"}},
        "meters": {
            "a": {"device": "box", "circuit": "consumption", "party": "h1", "register": "E1", "power": "P1"},
            "b": {"device": "box", "circuit": "generation", "register": "E2", "power": "P2"},
        },
        **energy,
    }})


def rows(factory, meter: str | None = None) -> list[StoredReading]:
    with factory() as s:
        q = select(StoredReading).order_by(StoredReading.meter, StoredReading.seq)
        if meter:
            q = q.where(StoredReading.meter == meter)
        return list(s.execute(q).scalars())


def counters(factory) -> dict[tuple[str, str], int]:
    with factory() as s:
        return {(c.source, c.kind): c.count for c in s.execute(select(InputCounter)).scalars()}


def test_resets_gaps_and_bad_input_end_to_end(db) -> None:
    settings = load_energy_settings(box_config(publish_window_s=86_400))
    script = [
        (T0, {"E1": 1000, "P1": 100, "E2": 500, "P2": 0}),
        (T0 + MIN, {"E1": 1010, "P1": 600, "E2": 520, "P2": 1200}),
        (T0 + 2 * MIN, {"E1": 5, "P1": 300, "E2": 520, "P2": 0}),  # a: the meter restarted
        (T0 + 3 * MIN, {"P1": 300, "E2": 530, "P2": 600}),  # a: E1 missing (truncated line)
        (T0 + 4 * MIN, {"E1": 20, "P1": 99_999_999, "E2": -5, "P2": 0}),  # both out of physical range
        (T0 + 34 * MIN, {"E1": 300.7, "P1": 250, "E2": 600, "P2": 10}),  # 30 minutes of silence
        (T0 + 34 * MIN - 1000, {"E1": 301, "P1": 250, "E2": 601, "P2": 10}),  # the clock went back
        (T0 + 35 * MIN, {"E1": 10_000_000, "P1": 250, "E2": 610, "P2": 10}),  # a: corrupted register
        (T0 + 36 * MIN, {"E1": 10_000_004, "P1": 250, "E2": math.nan, "P2": 10}),
    ]
    mon = EnergyMonitor(settings, db, {"box": ScriptedDevice("box", script)})
    for i in range(len(script)):
        assert mon.tick(T0 + i * MIN).committed

    a = rows(db, "a")
    assert [r.seq for r in a] == [1, 2, 3, 4, 5, 6]
    assert [r.register_wh for r in a] == [1000, 1010, 5, 300, 10_000_000, 10_000_004]
    assert [r.delta_wh for r in a] == [0, 10, 5, 295, 0, 4]
    assert [r.flags for r in a] == ["first", "", "reset", "gap", "spike,rebase", ""]
    b = rows(db, "b")
    assert [r.seq for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r.delta_wh for r in b] == [0, 20, 0, 10, 70, 10]
    assert [r.flags for r in b] == ["first", "", "", "", "gap", ""]
    for r in a + b:
        reading = verify_reading(r.canonical, r.digest)
        assert (reading.meter, reading.seq, reading.register_wh, reading.ts_ms) == (r.meter, r.seq, r.register_wh,
                                                                                  r.ts_ms)
        assert reading.hub == "test-hub" and reading.party == ("h1" if r.meter == "a" else "system")
    assert counters(db) == {
        ("a", "reset"): 1, ("a", "missing_value"): 1, ("a", "out_of_range"): 1, ("b", "out_of_range"): 2,
        ("a", "gap"): 1, ("b", "gap"): 1, ("a", "clock_backwards"): 1, ("b", "clock_backwards"): 1,
        ("a", "spike"): 1,
    }
    with db() as s:
        detail = s.execute(select(InputCounter.last_detail).where(InputCounter.source == "a",
                                                                  InputCounter.kind == "missing_value")).scalar_one()
    assert "P1:300" in detail  # the raw input is kept with the counter


def test_a_failing_device_does_not_stop_the_others(db) -> None:
    config = box_config()
    config.data["energy"]["devices"]["box2"] = {"driver": "serial", "port": "/dev/null"}
    config.data["energy"]["meters"]["b"]["device"] = "box2"
    settings = load_energy_settings(config)
    broken = ScriptedDevice("box", [RuntimeError("driver bug"), RuntimeError("driver bug")])
    fine = ScriptedDevice("box2", [(T0, {"E2": 1, "P2": 0}), (T0 + MIN, {"E2": 2, "P2": 0})])
    mon = EnergyMonitor(settings, db, {"box": broken, "box2": fine})
    mon.tick(T0)
    mon.tick(T0 + MIN)
    assert [r.seq for r in rows(db, "b")] == [1, 2] and rows(db, "a") == []
    assert counters(db) == {("box", "driver_error"): 2}


def sim_monitor(db, **energy: Any) -> EnergyMonitor:
    config = Config(data={"hub": {"id": "demo"}, "energy": {"clock_speed": 1, **energy}})
    settings = load_energy_settings(config)
    return EnergyMonitor(settings, db, {"sim": SimulatedDevice("sim", settings.community, T0)})


def messages(db) -> list[OutboxMessage]:
    with db() as s:
        return list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


def test_each_closed_window_becomes_one_message_carrying_exactly_its_readings(db) -> None:
    mon = sim_monitor(db, sample_interval_s=60, publish_window_s=300)
    for k in range(23):  # 00:00 .. 00:22: windows 00:00, 00:05, 00:10, 00:15 close; 00:20 stays open
        mon.tick(T0 + k * MIN + 250)
    msgs = messages(db)
    assert len(msgs) == 4
    stored = rows(db)
    assert len(stored) == 23 * 7
    for m in msgs:
        assert m.channel == "readings" and m.state == "queued"
        body = decode_message(trytes_to_ascii(m.message))
        assert (body.part, body.parts) == (1, 1)
        linked = sorted((r for r in stored if r.message_id == m.id), key=lambda r: (r.ts_ms, r.meter))
        assert len(linked) == 5 * 7
        assert sorted(r.digest().hex() for r in body.readings) == sorted(r.digest for r in linked)
        assert all(body.window_start_ms <= r.ts_ms < body.window_end_ms for r in linked)
    open_window = [r for r in stored if r.message_id is None]
    assert len(open_window) == 3 * 7 and all(r.ts_ms >= T0 + 20 * MIN for r in open_window)


def test_a_large_window_is_split_into_parts_under_the_size_limit(db) -> None:
    mon = sim_monitor(db, sample_interval_s=60, publish_window_s=600, max_message_bytes=2000)
    for k in range(11):
        mon.tick(T0 + k * MIN)
    msgs = messages(db)
    bodies = [decode_message(trytes_to_ascii(m.message)) for m in msgs]
    assert len(bodies) >= 7  # 70 readings of ~220 bytes in 2000-byte messages
    assert [b.part for b in bodies] == list(range(1, len(bodies) + 1))
    assert {b.parts for b in bodies} == {len(bodies)}
    assert all(len(m.message) <= 2 * 2000 for m in msgs)
    carried = [r.digest().hex() for b in bodies for r in b.readings]
    assert sorted(carried) == sorted(r.digest for r in rows(db) if r.ts_ms < T0 + 10 * MIN)
    assert len(set(carried)) == len(carried)


def test_a_failed_commit_keeps_the_sample_and_stores_it_with_the_next(db, monkeypatch) -> None:
    mon = sim_monitor(db, sample_interval_s=60, publish_window_s=120)
    real_enqueue = monitor_module.enqueue
    calls = {"n": 0}

    def flaky(session, channel, message):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real_enqueue(session, channel, message)

    monkeypatch.setattr(monitor_module, "enqueue", flaky)
    assert mon.tick(T0).committed and mon.tick(T0 + MIN).committed
    failed = mon.tick(T0 + 2 * MIN)  # closes the first window; the enqueue fails: the whole tick rolls back
    assert not failed.committed and mon.pending_samples == 1
    assert {r.seq for r in rows(db)} == {1, 2}
    stored = mon.tick(T0 + 3 * MIN)
    assert stored.committed and mon.pending_samples == 0
    assert [(r.meter, r.ts_ms) for r in stored.readings] == [(m, T0 + k * MIN) for k in (2, 3) for m in mon.settings.meters]
    for meter in mon.settings.meters:
        assert [(r.seq, r.ts_ms) for r in rows(db, meter)] == [(1, T0), (2, T0 + MIN), (3, T0 + 2 * MIN),
                                                                (4, T0 + 3 * MIN)]
    assert all((r.message_id is not None) == (r.ts_ms < T0 + 2 * MIN) for r in rows(db))


def test_an_unexpected_database_error_is_not_kept_for_later(db, monkeypatch) -> None:
    """Only transient errors (locked, full, I/O) keep the sample for a retry; anything else is for the loop's
    failure policy (exit 70, restart from the database)."""
    mon = sim_monitor(db)

    def broken(session, channel, message):  # type: ignore[no-untyped-def]
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(monitor_module, "enqueue", broken)
    mon.tick(T0)
    with pytest.raises(IntegrityError):
        mon.tick(T0 + 5 * MIN)  # closes the first window


def heads(factory) -> dict[str, tuple[int, int, int, str]]:
    with factory() as s:
        return {h.meter: (h.seq, h.ts_ms, h.register_wh, h.party) for h in s.execute(select(MeterHead)).scalars()}


def test_each_meters_head_is_its_newest_reading_and_a_restart_numbers_on_from_it(db) -> None:
    mon = sim_monitor(db)
    for k in range(3):
        assert mon.tick(T0 + k * MIN).committed
    newest = {r.meter: (r.seq, r.ts_ms, r.register_wh, r.party) for r in rows(db) if r.seq == 3}
    assert heads(db) == newest and len(newest) == len(mon.settings.meters)
    again = sim_monitor(db)  # a restart: the cursors come from the heads
    assert again.tick(T0 + 3 * MIN).committed
    assert {r.meter: r.seq for r in rows(db) if r.ts_ms == T0 + 3 * MIN} == {m: 4 for m in mon.settings.meters}
    assert {m: h[0] for m, h in heads(db).items()} == {m: 4 for m in mon.settings.meters}


def test_a_second_writer_cannot_store_a_meters_seq_twice(db) -> None:
    """Two energy managers on one database (a copied unit, a test left running): the one whose cursors are stale
    fails its transaction and stores nothing, instead of a second reading with a seq already taken."""
    first, second = sim_monitor(db), sim_monitor(db)
    assert first.tick(T0).committed
    with pytest.raises(IntegrityError):  # both numbered seq 1: the head is already there
        second.tick(T0 + 1000)
    stored = rows(db)
    again = sim_monitor(db)
    assert again.tick(T0 + MIN).committed
    first_before = heads(db)
    with pytest.raises(monitor_module.StaleCursor, match="another writer"):
        first.tick(T0 + MIN + 1000)  # first still thinks each meter is at seq 1; the heads are at 2
    assert heads(db) == first_before
    assert len(rows(db)) == len(stored) + len(again.settings.meters)
    assert sorted((r.meter, r.seq) for r in rows(db)) == sorted(
        (m, seq) for m in again.settings.meters for seq in (1, 2))


def lock_database(path: Path) -> sqlite3.Connection:
    """Another process's write lock: an open EXCLUSIVE transaction (readers go on in WAL mode, writers wait)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_samples_taken_while_the_database_is_locked_are_stored_once_when_it_is_back(short_busy_db) -> None:
    factory, path = short_busy_db
    mon = sim_monitor(factory, sample_interval_s=60, publish_window_s=300)
    assert mon.tick(T0).committed
    lock = lock_database(path)
    try:
        for k in (1, 2, 3):
            report = mon.tick(T0 + k * MIN)  # waits out the (shortened) busy timeout, then keeps the sample
            assert not report.committed and mon.pending_samples == k
    finally:
        lock.rollback()
        lock.close()
    report = mon.tick(T0 + 4 * MIN)
    assert report.committed and mon.pending_samples == 0
    assert sorted({r.ts_ms for r in report.readings}) == [T0 + k * MIN for k in (1, 2, 3, 4)]
    for meter in mon.settings.meters:
        stored = rows(factory, meter)
        assert [(r.seq, r.ts_ms) for r in stored] == [(k + 1, T0 + k * MIN) for k in range(5)]
        assert [r.flags for r in stored] == ["first", "", "", "", ""]
    assert counters(factory) == {}


def test_memory_for_pending_samples_is_bounded_and_the_registers_carry_the_energy(short_busy_db) -> None:
    factory, path = short_busy_db
    config = Config(data={"hub": {"id": "demo"}, "energy": {"clock_speed": 1}})
    settings = load_energy_settings(config)
    meters = len(settings.meters)
    mon = EnergyMonitor(settings, factory, {"sim": SimulatedDevice("sim", settings.community, T0)},
                        max_pending_readings=2 * meters)
    assert mon.tick(T0).committed
    lock = lock_database(path)
    try:
        for k in range(1, 6):
            assert not mon.tick(T0 + k * MIN).committed
    finally:
        lock.rollback()
        lock.close()
    assert mon.pending_samples == 2
    assert mon.tick(T0 + 6 * MIN).committed
    # samples at +3, +4 and +5 minutes were not kept; the 4-minute interval after them is a gap
    assert counters(factory) == {("database", "not_stored"): 3, **{(m, "gap"): 1 for m in settings.meters}}
    for meter in settings.meters:
        stored = rows(factory, meter)
        assert [(r.seq, r.ts_ms) for r in stored] == [(1, T0), (2, T0 + MIN), (3, T0 + 2 * MIN), (4, T0 + 6 * MIN)]
        # nothing is lost: the reading after the outage carries the energy of the samples that were not kept
        assert stored[3].delta_wh == stored[3].register_wh - stored[2].register_wh
        assert stored[3].interval_ms == 4 * MIN and "gap" in stored[3].flags


def test_readings_messages_refuse_tampering() -> None:
    from energy_manager.message import encode_window
    from energy_manager.reading import Reading

    r = Reading("demo", "h1", "h1", "consumption", T0 + 5, 100, 20, 1, "ab" * 16)
    (body, _), = encode_window("demo", T0, T0 + 300_000, [r], 16_000)
    assert decode_message(body).readings == (r,)
    for bad in (body.replace(b'"register_wh":100', b'"register_wh":101.5'),
                body.replace(b'"hub":"demo","meter"', b'"hub":"other","meter"'),
                body.replace(b'"window_end_ms":1750464300000', b'"window_end_ms":1750464000001'),
                body.replace(b'"part":1', b'"part":2'),
                body + b" ",
                body.replace(b'"type":"scb.readings"', b'"type":"other"')):
        with pytest.raises(ReadingError):
            decode_message(bad)
