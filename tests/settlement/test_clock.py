"""The community clock shared by the processes (scb.community_clock): the anchor's maths, what the energy manager
stores and what the settlement reads from it."""
from __future__ import annotations

from pathlib import Path

from energy_manager.models import EnergyState
from energy_manager.service import _start_clock
from energy_manager.settings import load_energy_settings
from scb.community_clock import CLOCK_STATE_KEY, ClockAnchor, StoredCommunityTime, load_anchor, save_anchor
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, transaction, upgrade
from settlement.clock import CommunityTime

#: 2030-01-01T00:00:00Z
START_MS = 1_893_456_000_000


def factory_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    return make_sessionmaker(engine)


def test_anchor_maths() -> None:
    anchor = ClockAnchor(community_ms=START_MS, wall_ms=1_000_000, speed=60.0)
    assert anchor.community_at(1_000_000 + 1_000) == START_MS + 60_000  # one real second is a community minute
    assert anchor.community_at(1_000_000 - 5_000) == START_MS  # a wall clock set back does not run time backwards
    assert anchor.wall_at(START_MS + 3_600_000) == 1_000_000 + 60_000  # a community hour later: one real minute
    assert anchor.wall_at(START_MS - 60_000) == 1_000_000 - 1_000  # and before the anchor
    assert ClockAnchor.from_dict(anchor.as_dict()) == anchor
    for broken in ({}, {"community_ms": "x", "wall_ms": 1, "speed": 1}, {"community_ms": 1, "wall_ms": 1, "speed": 0}):
        assert ClockAnchor.from_dict(broken) is None


def test_settlement_reads_the_anchor_the_energy_manager_stores(tmp_path: Path) -> None:
    factory = factory_for(tmp_path)
    energy = load_energy_settings(Config(data={"energy": {"clock_speed": 3600, "start": "2030-01-01T00:00:00Z"}}))
    wall = {"s": 0.0}
    reader = CommunityTime(energy, factory, wall=lambda: wall["s"])
    assert not reader.real_time and reader.now_ms() is None  # the energy manager never ran: no community time
    _start_clock(energy, None, factory)  # what `scb energy-manager` does at start
    with factory() as session:
        stored = load_anchor(session, EnergyState)
    # the clock started at the configured start and ran for less than a real second (an hour) until stored
    assert stored is not None and START_MS <= stored.community_ms < START_MS + 3_600_000 and stored.speed == 3600
    wall["s"] = stored.wall_ms / 1000 + 2  # two real seconds later: two community hours
    assert reader.now_ms() == stored.community_ms + 2 * 3_600_000
    assert reader.wall_s_at(stored.community_ms + 3_600_000) == stored.wall_ms / 1000 + 1


def test_real_time_reads_no_database(tmp_path: Path) -> None:
    factory = factory_for(tmp_path)
    with transaction(factory) as session:  # even a stored accelerated anchor is ignored by a real-time reader
        save_anchor(session, EnergyState, ClockAnchor(START_MS, 0, 60.0))
        assert session.get(EnergyState, CLOCK_STATE_KEY) is not None
    clock = StoredCommunityTime(factory, EnergyState, real_time=True, wall=lambda: 1_900_000_000.5)
    assert clock.now_ms() == 1_900_000_000_500 and clock.wall_s_at(1_900_000_100_000) == 1_900_000_100.0
