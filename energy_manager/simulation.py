"""A simulated solar community (pure): one PV system, households, and the grid connection.

Why a model and not random numbers: the demo and the tests need data that behaves like a real community - no
generation at night, a midday peak that depends on latitude and season, cloudy days, breakfast and dinner peaks
in the households, export at noon and import in the evening - and that balances exactly, because settlement
bills the households from it.

Everything is a pure function of (parameters, absolute time): the power during each 60-second step comes from
a clear-sky model and from noise hashed out of (seed, what, step), so the same seed gives the same community
whether it is computed in one go or resumed after a crash from a checkpoint. Registers are the integral of
power over the steps, so energy balances by construction, per step:

    self-consumed = min(generation, total load)
    export        = generation - self-consumed
    import        = total load - self-consumed

Clear-sky model: solar declination and equation of time (Cooper / Spencer approximations), the hour angle from
UTC and longitude, then Haurwitz' global horizontal irradiance GHI = 1098 cos z exp(-0.059 / cos z) W/m2; the
system delivers `peak_w` at 1000 W/m2, times 0.85 for inverter and wiring losses, times the cloud factor.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

STEP_MS = 60_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SYSTEM_LOSSES = 0.85
RESERVED_NAMES = frozenset({"pv", "import", "export"})


def unit(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) determined by (seed, parts): the simulator's only source of randomness."""
    text = "|".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True)
class CommunityParams:
    """What defines a simulated community; the same values give the same power curves."""

    seed: int
    latitude: float
    longitude: float
    peak_w: float
    households: tuple[str, ...]

    def fingerprint(self) -> str:
        return f"{self.seed}|{self.latitude!r}|{self.longitude!r}|{self.peak_w!r}|{','.join(self.households)}"

    def channels(self) -> list[str]:
        """The value keys the simulated device reports."""
        names = ["pv", *self.households, "import", "export"]
        return [f"{n}_{unit_}" for n in names for unit_ in ("wh", "w")]


def clear_sky_ghi(ts_ms: float, latitude: float, longitude: float) -> float:
    """Global horizontal irradiance under a clear sky (W/m2) at a UTC instant and place."""
    day_of_year = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).timetuple().tm_yday
    utc_hours = (ts_ms % DAY_MS) / HOUR_MS
    declination = math.radians(23.45) * math.sin(2 * math.pi * (284 + day_of_year) / 365)
    b = 2 * math.pi * (day_of_year - 81) / 364
    equation_of_time_min = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    solar_hours = utc_hours + longitude / 15 + equation_of_time_min / 60
    hour_angle = math.radians(15 * (solar_hours - 12))
    lat = math.radians(latitude)
    cos_z = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(hour_angle)
    if cos_z <= 0.01:
        return 0.0
    return 1098.0 * cos_z * math.exp(-0.059 / cos_z)


def cloud_factor(seed: int, ts_ms: float) -> float:
    """Fraction of clear-sky output that gets through (0.1..1): the day's weather, hourly drift, and flicker."""
    day = int(ts_ms // DAY_MS)
    weather = unit(seed, "weather", day)
    hours = ts_ms / HOUR_MS
    h0 = math.floor(hours)
    frac = hours - h0
    n0, n1 = unit(seed, "cloud", h0), unit(seed, "cloud", h0 + 1)
    drift = n0 + (n1 - n0) * (1 - math.cos(math.pi * frac)) / 2
    flicker = unit(seed, "flicker", int(ts_ms // STEP_MS))
    if weather < 0.55:  # clear day
        cloud = 0.08 * drift
    elif weather < 0.85:  # broken clouds: passing shadows
        cloud = 0.5 * drift + 0.4 * flicker * drift
    else:  # overcast
        cloud = 0.6 + 0.3 * drift
    return min(1.0, max(0.1, 1 - cloud))


def _bump(hour: float, centre: float, width: float) -> float:
    """A Gaussian bump on the 24-hour circle (so an evening peak wraps past midnight)."""
    d = (hour - centre + 12) % 24 - 12
    return math.exp(-0.5 * (d / width) ** 2)


def household_load_w(seed: int, household: str, ts_ms: float, longitude: float) -> float:
    """A household's power draw (W): standby base, breakfast/midday/dinner peaks, kettles, a washing machine.

    Each household gets its own base load, size and daily rhythm from the seed. Time of day is local mean
    solar time (UTC + longitude/15), which is roughly what daily life follows.
    """
    base = 60 + 120 * unit(seed, household, "base")
    scale = 0.6 + 0.9 * unit(seed, household, "scale")
    shift = (unit(seed, household, "shift") - 0.5) * 1.5
    step = int(ts_ms // STEP_MS)
    local_ms = ts_ms + longitude / 15 * HOUR_MS
    day = int(local_ms // DAY_MS)
    hour = ((local_ms % DAY_MS) / HOUR_MS - shift) % 24
    weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    profile = (
        450 * _bump(hour, 7.3, 0.7)
        + (400 if weekend else 150) * _bump(hour, 13.5, 2.5)
        + 800 * _bump(hour, 20.5, 1.6)
        + 150 * _bump(hour, 23.0, 1.0)
    )
    load = base + scale * profile * (0.85 + 0.3 * unit(seed, household, "noise", step))
    kettle_p = 0.003 + 0.05 * _bump(hour, 7.5, 0.6) + 0.02 * _bump(hour, 17.0, 2.0)
    if unit(seed, household, "kettle", step) < kettle_p:
        load += 2000
    if unit(seed, household, "wash", day) < 0.35:
        start = 9 + 12 * unit(seed, household, "wash-start", day)
        if start <= hour < start + 1.5:
            load += 500
    return load


@dataclass(frozen=True)
class StepPower:
    """Average power (W) over one 60-second step."""

    pv_w: float
    loads_w: dict[str, float]
    import_w: float
    export_w: float


def step_power(params: CommunityParams, step: int) -> StepPower:
    """Power during absolute step `step` (the minute starting at step * 60 s after the epoch)."""
    t = step * STEP_MS + STEP_MS / 2
    pv = params.peak_w * clear_sky_ghi(t, params.latitude, params.longitude) / 1000 * SYSTEM_LOSSES
    pv *= cloud_factor(params.seed, t)
    loads = {h: household_load_w(params.seed, h, t, params.longitude) for h in params.households}
    total = sum(loads.values())
    self_consumed = min(pv, total)
    return StepPower(pv_w=pv, loads_w=loads, import_w=total - self_consumed, export_w=pv - self_consumed)


def _initial_registers(params: CommunityParams) -> dict[str, float]:
    """Seeded starting registers (a real community's meters are not new)."""
    names = ["pv", *params.households, "import", "export"]
    return {n: float(int(unit(params.seed, n, "initial") * 5_000_000)) for n in names}


@dataclass
class Community:
    """The integrated state: registers (Wh, as floats) at the start of absolute step `step`.

    `values_at(ts)` integrates forward to ts and returns what the meters show. `checkpoint()`/`restore()` let a
    restarted process continue without integrating from the beginning; resuming gives the same numbers.
    """

    params: CommunityParams
    step: int
    acc: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, params: CommunityParams, start_ms: int) -> Community:
        return cls(params=params, step=int(start_ms // STEP_MS), acc=_initial_registers(params))

    def _advance(self, target_step: int) -> None:
        while self.step < target_step:
            p = step_power(self.params, self.step)
            k = STEP_MS / HOUR_MS
            self.acc["pv"] += p.pv_w * k
            for h, w in p.loads_w.items():
                self.acc[h] += w * k
            self.acc["import"] += p.import_w * k
            self.acc["export"] += p.export_w * k
            self.step += 1

    def values_at(self, ts_ms: int) -> dict[str, float]:
        """Registers (`<name>_wh`, float Wh) and power (`<name>_w`) at `ts_ms`, which must not be before the state.

        Registers are the integral up to the exact millisecond (linear within the step), so they grow smoothly.
        """
        target = int(ts_ms // STEP_MS)
        if target < self.step:
            raise ValueError(f"simulated time {ts_ms} is before the simulator's state (step {self.step})")
        self._advance(target)
        p = step_power(self.params, target)
        part_h = (ts_ms - target * STEP_MS) / HOUR_MS
        powers = {"pv": p.pv_w, **p.loads_w, "import": p.import_w, "export": p.export_w}
        out: dict[str, float] = {}
        for name, w in powers.items():
            out[f"{name}_wh"] = self.acc[name] + w * part_h
            out[f"{name}_w"] = w
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able state (floats round-trip exactly through JSON)."""
        return {"fingerprint": self.params.fingerprint(), "step": self.step, "acc": dict(self.acc)}

    @classmethod
    def restore(cls, params: CommunityParams, state: dict[str, Any], start_ms: int) -> Community:
        """Continue from a checkpoint. If the parameters changed since, keep the registers and go on from there
        with the new parameters (registers never jump because of a configuration change)."""
        try:
            step = int(state["step"])
            acc = {str(k): float(v) for k, v in dict(state["acc"]).items()}
        except (KeyError, TypeError, ValueError):
            return cls.start(params, start_ms)
        initial = _initial_registers(params)
        acc = {name: acc.get(name, initial[name]) for name in initial}
        return cls(params=params, step=step, acc=acc)
