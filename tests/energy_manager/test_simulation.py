"""The simulated community: physics it must respect, energy balance, determinism.

Expected solar figures come from astronomy, not from the simulator: for Madrid (40.42 N, 3.70 W) at the June
solstice solar noon is about 12:16 UTC, sunrise about 04:45 UTC and sunset about 19:48 UTC, and the sun stands at
90 - (40.42 - 23.44) = 73 degrees at noon (63.9 degrees zenith in December).
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from energy_manager.drivers.simulated import SimulatedDevice
from energy_manager.simulation import Community, CommunityParams, clear_sky_ghi

MADRID = (40.4168, -3.7038)
HOUSEHOLDS = ("h1", "h2", "h3", "h4")
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def params(seed: int = 7) -> CommunityParams:
    return CommunityParams(seed=seed, latitude=MADRID[0], longitude=MADRID[1], peak_w=6000, households=HOUSEHOLDS)


def test_solar_noon_sunrise_and_sunset_in_madrid_at_midsummer() -> None:
    day = utc_ms(2025, 6, 21)
    ghi = [(m, clear_sky_ghi(day + m * MINUTE, *MADRID)) for m in range(24 * 60)]
    peak_minute = max(ghi, key=lambda x: x[1])[0]
    assert 12 * 60 + 5 <= peak_minute <= 12 * 60 + 30  # solar noon ~12:16 UTC
    lit = [m for m, g in ghi if g > 0]
    assert 4 * 60 + 30 <= lit[0] <= 5 * 60 + 15  # sunrise ~04:45 UTC (the model cuts at 0.6 deg elevation)
    assert 19 * 60 + 15 <= lit[-1] <= 19 * 60 + 50  # sunset ~19:48 UTC


def test_noon_irradiance_follows_the_seasons_and_hemispheres() -> None:
    june = clear_sky_ghi(utc_ms(2025, 6, 21, 12, 16), *MADRID)
    december = clear_sky_ghi(utc_ms(2025, 12, 21, 12, 25), *MADRID)
    assert 900 < june < 1050  # clear summer noon at 73 deg elevation
    assert 350 < december < 500  # clear winter noon at 26 deg elevation
    sydney = (-33.87, 151.21)  # solar noon ~01:55 UTC
    assert clear_sky_ghi(utc_ms(2025, 12, 21, 1, 55), *sydney) > clear_sky_ghi(utc_ms(2025, 6, 21, 1, 55), *sydney)


def test_energy_balances_over_a_day_on_the_meters_registers() -> None:
    """generation = self-consumed + exported and consumption = self-consumed + imported, so
    generation - export = consumption - import, on the integer registers the monitor stores."""
    start = utc_ms(2025, 6, 21)
    device = SimulatedDevice("sim", params(), start)

    def registers(ts: int) -> dict[str, int]:
        sample = device.read(ts)
        assert sample is not None
        return {k: math.floor(v) for k, v in sample.values.items() if k.endswith("_wh")}

    a, b = registers(start + 17), registers(start + DAY + 17)
    d = {k: b[k] - a[k] for k in a}
    consumption = sum(d[f"{h}_wh"] for h in HOUSEHOLDS)
    self_consumed = d["pv_wh"] - d["export_wh"]
    # each of the 7 floored registers is off by less than 1 Wh at either end
    assert abs(self_consumed - (consumption - d["import_wh"])) <= 6
    assert 0 <= self_consumed <= min(d["pv_wh"], consumption)
    assert 10_000 < d["pv_wh"] < 60_000  # 6 kWp in Madrid in June: ~25-45 kWh on a clear day
    assert all(3_000 < d[f"{h}_wh"] < 25_000 for h in HOUSEHOLDS)  # a household uses 3..25 kWh a day


def test_a_week_has_export_at_noon_and_import_at_night() -> None:
    start = utc_ms(2025, 6, 15)
    community = Community.start(params(), start)
    noon_export = night_import = night_pv = 0.0
    for day in range(7):
        noon = community.values_at(start + day * DAY + 12 * HOUR + 16 * MINUTE)
        night = community.values_at(start + day * DAY + 26 * HOUR)  # 02:00 UTC next day
        noon_export += noon["export_w"]
        night_import += night["import_w"]
        night_pv += night["pv_w"]
    assert noon_export > 0 and night_import > 0 and night_pv == 0


def test_households_use_more_in_the_evening_than_at_night() -> None:
    start = utc_ms(2025, 3, 3)
    community = Community.start(params(), start)
    evening, night = [], []
    for day in range(5):
        for minute in range(0, 24 * 60, 10):
            t = start + day * DAY + minute * MINUTE
            v = community.values_at(t)
            load = sum(v[f"{h}_w"] for h in HOUSEHOLDS)
            local_hour = (minute / 60 + MADRID[1] / 15) % 24
            if 19 <= local_hour < 22:
                evening.append(load)
            elif 2 <= local_hour < 5:
                night.append(load)
    assert sum(evening) / len(evening) > 2 * sum(night) / len(night)


def test_same_seed_same_community_other_seed_other_community() -> None:
    start = utc_ms(2025, 5, 1, 6)
    a, b, c = (Community.start(params(seed), start) for seed in (7, 7, 8))
    times = [start + k * 7 * MINUTE + 1234 for k in range(300)]
    va = [a.values_at(t) for t in times]
    assert va == [b.values_at(t) for t in times]
    assert va != [c.values_at(t) for t in times]


def test_resuming_from_a_checkpoint_gives_the_same_numbers() -> None:
    start = utc_ms(2025, 5, 1)
    whole = Community.start(params(), start)
    first = Community.start(params(), start)
    times = [start + k * 13 * MINUTE + 999 for k in range(200)]
    for t in times[:100]:
        first.values_at(t)
    saved = json.loads(json.dumps(first.checkpoint()))
    resumed = Community.restore(params(), saved, start)
    assert [resumed.values_at(t) for t in times[100:]] == [whole.values_at(t) for t in times[100:]]


def test_registers_depend_on_time_only_not_on_how_often_they_are_read() -> None:
    start = utc_ms(2025, 8, 1)
    often, rarely = Community.start(params(), start), Community.start(params(), start)
    for k in range(1, 600):
        often.values_at(start + k * 17_000)
    end = start + 600 * 17_000
    assert often.values_at(end) == rarely.values_at(end)


def test_registers_only_grow() -> None:
    start = utc_ms(2025, 1, 10)
    community = Community.start(params(), start)
    prev = community.values_at(start)
    for k in range(1, 2000):
        cur = community.values_at(start + k * 45_000)
        assert all(cur[key] >= prev[key] for key in cur if key.endswith("_wh"))
        assert all(cur[key] >= 0 for key in cur if key.endswith("_w"))
        prev = cur


def test_changed_parameters_continue_from_the_stored_registers() -> None:
    start = utc_ms(2025, 5, 1)
    old = Community.start(params(7), start)
    before = old.values_at(start + 5 * HOUR)
    changed = Community.restore(params(99), json.loads(json.dumps(old.checkpoint())), start)
    after = changed.values_at(start + 5 * HOUR + MINUTE)
    for key in before:
        if key.endswith("_wh"):
            assert 0 <= after[key] - before[key] < 100  # a minute's energy at most, no jump


def test_clock_jump_detector_tells_a_step_from_a_slow_sample() -> None:
    from energy_manager.clock import JumpDetector

    wall, mono = [1000.0], [50.0]
    detector = JumpDetector(wall=lambda: wall[0], monotonic=lambda: mono[0])

    def advance(wall_s: float, mono_s: float) -> float | None:
        wall[0] += wall_s
        mono[0] += mono_s
        return detector.check()

    assert advance(60, 60) is None  # a normal interval
    assert advance(61.5, 60) is None  # within the 2 s + 5 % tolerance
    assert advance(3600 + 60, 60) == 3600  # NTP stepped the clock an hour forward
    assert advance(-100 + 60, 60) == -100  # set back
    assert advance(300, 300) is None  # a long, slow sample is not a jump


def test_accelerated_clock_resumes_where_the_community_would_be() -> None:
    from energy_manager.clock import ClockAnchor, CommunityClock, resume_point

    anchor = ClockAnchor(community_ms=1_000_000, wall_ms=5_000, speed=60)
    # 10 real seconds later the community is 10 minutes further
    assert resume_point(anchor, 15_000, None, 0) == 1_000_000 + 600_000
    # the wall clock went back while the hub was down: no jump back in community time
    assert resume_point(anchor, 1_000, None, 0) == 1_000_000
    # never before the newest stored reading
    assert resume_point(anchor, 15_000, None, 9_999_999) == 9_999_999
    # first start: the configured start, else now
    assert resume_point(None, 15_000, 42_000, 0) == 42_000 and resume_point(None, 15_000, None, 0) == 15_000
    t = [100.0]
    clock = CommunityClock(3600, 0, wall=lambda: 1.0, monotonic=lambda: t[0])
    t[0] += 1.0
    assert clock.now_ms() == 3_600_000 and clock.seconds_until(7_200_000) == 1.0
