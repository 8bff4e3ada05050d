"""The community clock's anchor: written by the energy manager, read by the settlement and the dashboard.

Readings carry community-clock timestamps: wall time for real meters, an accelerated clock (60x, 3600x) for the
simulated community. The energy manager runs the clock and stores its *anchor* (community time at a wall-clock
instant, and the speed) in its key/value state under `CLOCK_STATE_KEY`; every other process derives "now" from
that anchor, so all of them agree on community time without talking to each other.

Why this module is plumbing and not part of a component: the anchor's maths and its stored form are a contract
between processes. Kept here, the energy manager, the settlement and the dashboard import it and none of them
imports another's service module. It imports no component: the key/value table is a parameter (the energy
manager's `EnergyState` model, which has the `key` / `value_json` columns of `scb.db.load_json_value`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from scb.db import load_json_value, save_json_value

#: The key of the anchor in the energy manager's key/value state (table `energy_state`).
CLOCK_STATE_KEY = "clock"


@dataclass(frozen=True)
class ClockAnchor:
    """Community time `community_ms` was current at wall time `wall_ms`, running at `speed`."""

    community_ms: int
    wall_ms: int
    speed: float

    def as_dict(self) -> dict[str, float | int]:
        return {"community_ms": self.community_ms, "wall_ms": self.wall_ms, "speed": self.speed}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClockAnchor | None:
        """The anchor stored as `as_dict` wrote it; None for anything else (a torn or foreign value)."""
        try:
            anchor = cls(int(data["community_ms"]), int(data["wall_ms"]), float(data["speed"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None
        return anchor if anchor.speed > 0 else None

    def community_at(self, wall_ms: int) -> int:
        """Community time at wall time `wall_ms`. A wall clock set back behind the anchor does not move community
        time backwards (it stays at the anchor)."""
        return self.community_ms + int(self.speed * max(0, wall_ms - self.wall_ms))

    def wall_at(self, community_ms: int) -> float:
        """Wall time (ms) at which community time is (or was) `community_ms`: the inverse of `community_at`."""
        return self.wall_ms + (community_ms - self.community_ms) / self.speed


def resume_point(previous: ClockAnchor | None, wall_ms: int, start_ms: int | None, not_before_ms: int) -> int:
    """Community time at which an accelerated clock starts now.

    previous: the stored anchor (None on the first run); start_ms: the configured start for a first run (None:
    now); not_before_ms: one past the newest stored reading, so time never runs backwards for a meter.
    """
    if previous is None:
        point = start_ms if start_ms is not None else wall_ms
    else:
        point = previous.community_at(wall_ms)  # the wall clock was set back while we were down: no jump
    return max(point, not_before_ms)


def load_anchor(session: Session, model: type) -> ClockAnchor | None:
    """The stored anchor (None before the energy manager ever ran, or if the value is unreadable)."""
    stored = load_json_value(session, model, CLOCK_STATE_KEY)
    return ClockAnchor.from_dict(stored) if stored else None


def save_anchor(session: Session, model: type, anchor: ClockAnchor) -> None:
    """Store `anchor` in the caller's transaction."""
    save_json_value(session, model, CLOCK_STATE_KEY, anchor.as_dict())


class StoredCommunityTime:
    """Community time as a reader sees it: wall time when the clock is real time, else from the stored anchor.

    `real_time` says whether the community clock is the wall clock (real meters: `clock_speed = 1` and no start);
    then the database is not read at all.
    """

    def __init__(self, factory: sessionmaker[Session], model: type, real_time: bool,
                 wall: Callable[[], float] = time.time) -> None:
        self.factory = factory
        self.model = model
        self.real_time = real_time
        self._wall = wall

    def anchor(self) -> ClockAnchor | None:
        if self.real_time:
            return ClockAnchor(int(self._wall() * 1000), int(self._wall() * 1000), 1.0)
        with self.factory() as session:
            return load_anchor(session, self.model)

    def now_ms(self) -> int | None:
        """Community time now; None while the accelerated clock has never run (no anchor stored yet)."""
        wall_ms = int(self._wall() * 1000)
        if self.real_time:
            return wall_ms
        anchor = self.anchor()
        return anchor.community_at(wall_ms) if anchor is not None else None

    def wall_s_at(self, community_ms: int) -> float | None:
        """Wall-clock seconds (Unix time) at which community time is or was `community_ms`; None without anchor."""
        if self.real_time:
            return community_ms / 1000
        anchor = self.anchor()
        return anchor.wall_at(community_ms) / 1000 if anchor is not None else None
