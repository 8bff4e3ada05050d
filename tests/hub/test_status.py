"""hub.status: what `scb status`, the dashboard and the fleet upload read of the hub's database, at every poll."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from energy_manager.models import StoredReading
from hub.status import collect_status, snapshot
from scb.config import Config
from scb.db import open_database, transaction
from tests.energy_manager.test_monitor import MIN, T0, sim_monitor

NOW = 1_800_000_000.0


def test_the_readings_count_is_every_stored_reading(tmp_path: Path) -> None:
    """The count comes from the meter heads (no row is counted); it must be what counting the rows gives."""
    factory = open_database(Config(data={"hub": {"data_dir": str(tmp_path)}}))
    assert collect_status(factory)["readings"]["count"] == 0
    mon = sim_monitor(factory)
    for k in range(4):
        assert mon.tick(T0 + k * MIN).committed
    with factory() as session:
        rows = session.scalar(select(func.count(StoredReading.id)))
    assert rows == 4 * len(mon.settings.meters) and collect_status(factory)["readings"]["count"] == rows


def test_the_snapshot_takes_the_newest_stored_readings_time(tmp_path: Path) -> None:
    """`last_reading_at` is the newest row's `created_at` (found by its id, without reading every reading)."""
    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    factory = open_database(config)
    assert snapshot(config, factory, [], NOW).last_reading_at is None
    stored = [datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc), datetime(2026, 12, 3, 9, 1, tzinfo=timezone.utc)]
    with transaction(factory) as session:
        for seq, created in enumerate(stored, 1):
            session.add(StoredReading(hub="scb-demo-hub", meter="m", seq=seq, party="p1", circuit="load",
                                      ts_ms=seq, register_wh=0, power_w=0, salt="0" * 32, canonical=b"{}",
                                      digest=f"{seq:064x}", delta_wh=0, window_start_ms=0, created_at=created))
    assert snapshot(config, factory, [], NOW).last_reading_at == stored[1].timestamp()
