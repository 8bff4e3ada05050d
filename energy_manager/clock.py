"""The community clock: real time for real meters, accelerated time for the simulated community.

With `clock_speed = 60` one real second is one simulated minute: a demo day lasts 24 minutes and the tests run
days in seconds. Readings carry community-clock timestamps, and everything downstream (publish windows,
settlement periods) follows them.

Across restarts the accelerated clock keeps running as if the hub had been up: the anchor (community time at a
wall-clock instant; `scb.community_clock`, shared with the processes that read the clock) is stored in the
database, and on start the clock continues from `anchor + speed x (wall time since the anchor)`. Why: the simulated meters are a physical model; a hub that was
down does not stop the sun. The readings after a restart therefore show a gap, as they would with real meters.
Within a run the clock advances with `time.monotonic`, so NTP steps do not move an accelerated clock.
"""
from __future__ import annotations

import time
from collections.abc import Callable

# The anchor's maths and its stored form are shared with the processes that read the clock (scb.community_clock);
# re-exported here because the energy manager is the one that runs the clock.
from scb.community_clock import ClockAnchor, resume_point

__all__ = ["ClockAnchor", "CommunityClock", "JumpDetector", "resume_point"]


class CommunityClock:
    """`now_ms()` in community time; `seconds_until(ms)` in real seconds, for sleeping."""

    def __init__(
        self,
        speed: float,
        start_ms: int | None = None,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.real_time = speed == 1 and start_ms is None
        self._wall = wall
        self._mono = monotonic
        self._mono0 = monotonic()
        self.start_ms = int(wall() * 1000) if start_ms is None else int(start_ms)

    def now_ms(self) -> int:
        if self.real_time:
            return int(self._wall() * 1000)
        return self.start_ms + int((self._mono() - self._mono0) * 1000 * self.speed)

    def wall_ms(self) -> int:
        return int(self._wall() * 1000)

    def seconds_until(self, community_ms: int) -> float:
        return max(0.0, (community_ms - self.now_ms()) / 1000 / self.speed)

    def anchor(self) -> ClockAnchor:
        """The anchor to store: where this clock is now, against the wall clock."""
        return ClockAnchor(self.now_ms(), self.wall_ms(), self.speed)


class JumpDetector:
    """Notices the wall clock being stepped (NTP after boot, an operator's `date -s`) between two samples.

    Real-time readings are stamped with the wall clock; a step shows up as a sudden gap (forward) or as readings
    refused for running backwards. Comparing wall-clock progress with monotonic progress tells a step from a
    slow sample, so it can be logged and counted as a clock jump.
    """

    def __init__(self, *, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 tolerance_s: float = 2.0, tolerance_ratio: float = 0.05) -> None:
        self._wall = wall
        self._mono = monotonic
        self.tolerance_s = tolerance_s
        self.tolerance_ratio = tolerance_ratio
        self._last = (wall(), monotonic())

    def check(self) -> float | None:
        """Seconds the wall clock moved beyond the time that passed since the last check, or None."""
        wall, mono = self._wall(), self._mono()
        last_wall, last_mono = self._last
        self._last = (wall, mono)
        elapsed = mono - last_mono
        jump = (wall - last_wall) - elapsed
        if abs(jump) > self.tolerance_s + self.tolerance_ratio * elapsed:
            return jump
        return None
