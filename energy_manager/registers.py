"""From cumulative registers to energy: the reset and gap rules (pure).

Meters report a cumulative register (Wh) that normally only grows. Energy over an interval is the difference of
two registers - and that difference is where home-energy dashboards go wrong: a meter that reboots reports a
smaller register (naive delta: hugely negative), a corrupted or replaced meter reports a much larger one (naive
delta: a spike of megawatt-hours). Here each reading gets a `delta_wh` that is never negative and never more
than the meter could physically have measured, plus flags saying what happened:

    first   no earlier reading of this meter: delta 0 (the register is the baseline)
    gap     the interval is longer than expected (missed samples, hub down); the delta covers the whole gap
    reset   the register went down: the meter restarted counting. If the new value is within what the meter
            could have counted since the previous reading, it is taken as counted from zero (delta = register);
            otherwise the energy is unknown: delta 0, flag `rebase` too
    spike   the register rose by more than max_power x interval could explain: delta 0, flag `rebase`
    rebase  the register is a new baseline; the energy between the two readings is unknown and counted as 0

Why zero instead of a guess: the delta is what households are billed for; under-counting one interval is
visible in the flags and recoverable by hand, a spike on a bill is not.

A reading whose timestamp is not after the previous one's is refused (ClockBackwards): storing it would make a
meter's history run backwards. The settlement sums `delta_wh` per period; anyone holding the consecutive
readings can recompute each delta with `energy_delta`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scb.errors import DataError

FIRST = "first"
GAP = "gap"
RESET = "reset"
SPIKE = "spike"
REBASE = "rebase"
FLAGS = (FIRST, GAP, RESET, SPIKE, REBASE)


class ClockBackwards(DataError):
    """A reading's timestamp is not after the meter's previous reading."""


@dataclass(frozen=True)
class RegisterState:
    """What the rules need of the meter's previous accepted reading."""

    ts_ms: int
    register_wh: int


@dataclass(frozen=True)
class Delta:
    """The energy a reading adds, and why."""

    delta_wh: int
    interval_ms: int | None
    flags: tuple[str, ...]

    @property
    def flags_text(self) -> str:
        """Flags as stored: comma-separated in FLAGS order, '' when the reading is ordinary."""
        return ",".join(self.flags)


def max_energy_wh(max_power_w: float, interval_ms: int) -> int:
    """Most energy a meter rated `max_power_w` can count in `interval_ms`, plus 1 Wh for integer registers."""
    return math.ceil(max_power_w * interval_ms / 3_600_000) + 1


def energy_delta(
    prev: RegisterState | None,
    ts_ms: int,
    register_wh: int,
    *,
    max_power_w: float,
    gap_after_ms: int,
) -> Delta:
    """Apply the rules above to a new register value; raise ClockBackwards when time did not advance."""
    if register_wh < 0:
        raise DataError(f"a register cannot be negative ({register_wh} Wh)")
    if prev is None:
        return Delta(0, None, (FIRST,))
    interval = ts_ms - prev.ts_ms
    if interval <= 0:
        raise ClockBackwards(
            f"timestamp {ts_ms} is not after the previous reading's {prev.ts_ms} ({interval} ms)"
        )
    flags: set[str] = set()
    if interval > gap_after_ms:
        flags.add(GAP)
    bound = max_energy_wh(max_power_w, interval)
    if register_wh >= prev.register_wh:
        delta = register_wh - prev.register_wh
        if delta > bound:
            flags.update((SPIKE, REBASE))
            delta = 0
    else:
        flags.add(RESET)
        if register_wh <= bound:
            delta = register_wh
        else:
            flags.add(REBASE)
            delta = 0
    return Delta(delta, interval, tuple(f for f in FLAGS if f in flags))
