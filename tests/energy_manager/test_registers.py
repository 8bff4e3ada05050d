"""Reset and gap rules: energy is never negative and never more than the meter could have measured."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_manager.registers import ClockBackwards, RegisterState, energy_delta, max_energy_wh

MINUTE = 60_000
# 30 kW for one minute is 500 Wh; +1 Wh for integer registers
KW30 = {"max_power_w": 30_000, "gap_after_ms": 3 * MINUTE}


def test_first_reading_is_a_baseline() -> None:
    d = energy_delta(None, 1_000, 12_345, **KW30)
    assert (d.delta_wh, d.interval_ms, d.flags) == (0, None, ("first",))


def test_ordinary_increase() -> None:
    d = energy_delta(RegisterState(0, 1_000), MINUTE, 1_010, **KW30)
    assert (d.delta_wh, d.interval_ms, d.flags_text) == (10, MINUTE, "")


def test_unchanged_register_is_zero_energy() -> None:
    assert energy_delta(RegisterState(0, 1_000), MINUTE, 1_000, **KW30).delta_wh == 0


def test_reset_to_a_small_value_counts_from_zero() -> None:
    d = energy_delta(RegisterState(0, 1_000), MINUTE, 5, **KW30)
    assert (d.delta_wh, d.flags) == (5, ("reset",))


def test_reset_to_an_implausible_value_counts_nothing() -> None:
    # e.g. a meter restoring an older saved register from EEPROM: 950 Wh cannot have been counted in a minute
    d = energy_delta(RegisterState(0, 1_000), MINUTE, 950, **KW30)
    assert (d.delta_wh, d.flags) == (0, ("reset", "rebase"))


def test_spike_counts_nothing() -> None:
    d = energy_delta(RegisterState(0, 1_000), MINUTE, 2_000, **KW30)
    assert (d.delta_wh, d.flags) == (0, ("spike", "rebase"))


def test_largest_plausible_increase_is_kept() -> None:
    assert energy_delta(RegisterState(0, 1_000), MINUTE, 1_501, **KW30).delta_wh == 501
    assert energy_delta(RegisterState(0, 1_000), MINUTE, 1_502, **KW30).flags == ("spike", "rebase")


def test_gap_keeps_the_energy_and_says_so() -> None:
    d = energy_delta(RegisterState(0, 1_000), 60 * MINUTE, 3_000, **KW30)
    assert (d.delta_wh, d.interval_ms, d.flags) == (2_000, 60 * MINUTE, ("gap",))


def test_reset_during_a_gap() -> None:
    d = energy_delta(RegisterState(0, 50_000), 60 * MINUTE, 700, **KW30)
    assert (d.delta_wh, d.flags) == (700, ("gap", "reset"))


@pytest.mark.parametrize("ts", [1_000, 999, 0])
def test_time_must_advance(ts: int) -> None:
    with pytest.raises(ClockBackwards):
        energy_delta(RegisterState(1_000, 10), ts, 20, **KW30)


def test_max_energy_bound() -> None:
    assert max_energy_wh(3_600, 3_600_000) == 3_601  # 3.6 kW for an hour, +1
    assert max_energy_wh(1, 1) == 2  # any positive energy rounds up to 1 Wh, +1


steps = st.lists(st.tuples(st.integers(1, 10 * MINUTE), st.integers(0, 10**9)), min_size=1, max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10**9), steps)
def test_deltas_are_never_negative_nor_beyond_physics(start: int, seq: list[tuple[int, int]]) -> None:
    prev = RegisterState(0, start)
    for dt, register in seq:
        d = energy_delta(prev, prev.ts_ms + dt, register, **KW30)
        assert 0 <= d.delta_wh <= max_energy_wh(30_000, dt)
        prev = RegisterState(prev.ts_ms + dt, register)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.lists(st.tuples(st.integers(1, 10 * MINUTE), st.floats(0, 1)), max_size=60))
def test_plausible_monotone_registers_lose_no_energy(start: int, seq: list[tuple[int, float]]) -> None:
    prev = RegisterState(0, start)
    total = 0
    for dt, fraction in seq:
        register = prev.register_wh + int(fraction * 30_000 * dt / 3_600_000)
        d = energy_delta(prev, prev.ts_ms + dt, register, **KW30)
        assert set(d.flags) <= {"gap"}
        total += d.delta_wh
        prev = RegisterState(prev.ts_ms + dt, register)
    assert total == prev.register_wh - start
