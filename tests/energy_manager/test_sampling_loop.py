"""The "sampling" loop under the failure policy (scb.loop): a database lock is waited out in place and every
sample taken meanwhile is stored exactly once; an unexpected error ends the process with exit code 70.

These run `energy_manager.service.run` in a thread on the real SQLite file, with the busy timeout shortened
(the hub waits 30 s) and a fast backoff; waits follow the loop's progress (a hang is caught by the timeout mark).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import energy_manager.service as service
from energy_manager.monitor import EnergyMonitor
from energy_manager.settings import load_energy_settings
from scb.community_clock import ClockAnchor
from scb.config import Config
from scb.db import make_engine, upgrade
from scb.loop import EXIT_LOOP_FAILED, read_heartbeats
from scb.retry import Backoff

pytestmark = pytest.mark.timeout(120)

TEST_BUSY_TIMEOUT_MS = 50  # the lock below outlasts it many times over


def hub_config(data_dir: Path) -> Config:
    return Config(data={"hub": {"id": "demo", "data_dir": str(data_dir)},
                        "energy": {"clock_speed": 3600, "start": "2025-06-21T00:00:00Z", "sample_interval_s": 60}})


@pytest.fixture()
def short_busy_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`init_db` of the service returns the hub's engine with a busy timeout of 50 ms instead of 30 s."""
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA busy_timeout={TEST_BUSY_TIMEOUT_MS}")  # after make_engine's own pragmas

    upgrade(engine)
    monkeypatch.setattr(service, "init_db", lambda config: engine)
    return engine


class Running:
    """`service.run` in a thread; fatal errors are recorded instead of exiting the test process."""

    def __init__(self, config: Config, **kw: Any) -> None:
        self.stop = threading.Event()
        self.fatal: list[tuple[str, BaseException]] = []
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(config,), kwargs=kw, daemon=True)
        self.thread.start()

    def _run(self, config: Config, **kw: Any) -> None:
        self.code = service.run(config, stop=self.stop, install_signals=False,
                                on_fatal=lambda name, exc: self.fatal.append((name, exc)),
                                backoff=Backoff(0.005, 0.02), **kw)

    def wait(self, condition: Callable[[], bool]) -> None:
        while not condition():
            assert self.thread.is_alive() or condition(), f"the loop ended early: {self.fatal}"
            time.sleep(0.01)

    def finish(self) -> int | None:
        self.stop.set()
        self.thread.join()
        return self.code


def read(path: Path, sql: str) -> list[tuple]:
    """A plain reader (the hub's sessions all BEGIN IMMEDIATE, which would wait for the lock like a writer)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def samples_stored(path: Path) -> int:
    return read(path, "SELECT COUNT(DISTINCT ts_ms) FROM energy_readings")[0][0]


def loop_beat(data_dir: Path) -> dict[str, Any]:
    return read_heartbeats(data_dir).get("energy-manager", {}).get("loops", {}).get("sampling", {})


def test_samples_taken_during_a_database_lock_are_stored_once_and_the_loop_goes_on(
        tmp_path: Path, short_busy_engine) -> None:
    db = tmp_path / "scb.sqlite3"
    run = Running(hub_config(tmp_path))
    run.wait(lambda: samples_stored(db) >= 3)
    lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock far beyond the busy timeout
    locked_at = time.time()
    try:
        stored_before = samples_stored(db)  # a plain reader is not blocked (WAL)
        run.wait(lambda: loop_beat(tmp_path).get("detail", {}).get("pending_samples", 0) >= 3)
        beat = loop_beat(tmp_path)
        assert "database is locked" in beat["error"] and beat["failures"] >= 1
        assert samples_stored(db) == stored_before  # nothing got through the lock
    finally:
        released_at = time.time()
        lock.rollback()
        lock.close()
    waited = loop_beat(tmp_path)["detail"]["pending_samples"]
    run.wait(lambda: samples_stored(db) >= stored_before + waited + 3)  # back, and sampling on
    assert run.finish() == 0 and run.fatal == []

    beat = loop_beat(tmp_path)
    assert beat["error"] is None and beat["detail"]["pending_samples"] == 0
    settings = load_energy_settings(hub_config(tmp_path))
    by_meter: dict[str, list[tuple[int, int, int, int]]] = {}
    for meter, seq, ts_ms, register_wh, delta_wh in read(
            db, "SELECT meter, seq, ts_ms, register_wh, delta_wh FROM energy_readings ORDER BY meter, seq"):
        by_meter.setdefault(meter, []).append((seq, ts_ms, register_wh, delta_wh))
    assert sorted(by_meter) == sorted(settings.meters)
    for meter, stored in by_meter.items():
        # every sample exactly once: sequence numbers 1..n without a gap or a repeat, times strictly increasing
        assert [seq for seq, *_ in stored] == list(range(1, len(stored) + 1)), meter
        assert all(a[1] < b[1] for a, b in zip(stored, stored[1:])), meter
        assert all(b[3] == b[2] - a[2] for a, b in zip(stored, stored[1:])), meter  # no energy lost or doubled
    assert len({len(v) for v in by_meter.values()}) == 1  # whole samples only
    # the samples taken while the database was locked are there (not dropped): map the lock's wall times to
    # community time with the clock anchor the loop stored
    anchor = ClockAnchor.from_dict(json.loads(read(db, "SELECT value_json FROM energy_state WHERE key = 'clock'")[0][0]))
    assert anchor is not None

    def community(wall_s: float) -> float:  # before the anchor too (community_at stops at the anchor)
        return anchor.community_ms + anchor.speed * (wall_s * 1000 - anchor.wall_ms)

    lock_start, lock_end = community(locked_at), community(released_at)
    during = {ts for stored in by_meter.values() for _seq, ts, _r, _d in stored if lock_start <= ts <= lock_end}
    assert len(during) >= waited - 1 >= 2  # (the first one waiting may have been taken just before the lock)
    assert len(next(iter(by_meter.values()))) >= stored_before + waited + 3


def test_an_unexpected_error_ends_the_loop_for_a_restart(tmp_path: Path, short_busy_engine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(self: EnergyMonitor) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(EnergyMonitor, "store", bug)
    run = Running(hub_config(tmp_path))
    run.thread.join()
    assert run.code == EXIT_LOOP_FAILED
    assert [(name, type(exc)) for name, exc in run.fatal] == [("sampling", KeyError)]
    assert loop_beat(tmp_path)["error"] == "KeyError: 'a bug'"


def test_samples_option_stores_that_many_and_beats(tmp_path: Path, short_busy_engine) -> None:
    run = Running(hub_config(tmp_path), max_samples=3)
    run.thread.join()
    assert run.code == 0 and run.fatal == []
    assert samples_stored(tmp_path / "scb.sqlite3") == 3
    beat = read_heartbeats(tmp_path)["energy-manager"]
    assert beat["loops"]["sampling"]["error"] is None and beat["loops"]["sampling"]["detail"] == {"pending_samples": 0}


@pytest.mark.parametrize(("interval_s", "speed", "cap"), [(60, 60, 1.0), (60, 1, 60.0), (3600, 1, 300.0),
                                                           (0.5, 1, 0.5)])
def test_retries_never_wait_longer_than_a_sample_interval(interval_s: float, speed: float, cap: float) -> None:
    energy: dict[str, Any] = {"sample_interval_s": interval_s, "publish_window_s": max(interval_s, 300),
                              "clock_speed": speed}
    backoff = service.sampling_backoff(load_energy_settings(Config(data={"energy": energy})))
    assert backoff.maximum == cap and backoff.initial == min(1.0, cap)
    delays = [backoff.fail(0.0) for _ in range(20)]
    assert max(delays) <= cap
