"""The one backoff rule: doubling up to a ceiling, reset on success, optional jitter within [50 %, 100 %]."""
from __future__ import annotations

import random

from scb.retry import Backoff, jittered


def test_doubles_to_the_ceiling_and_resets() -> None:
    b = Backoff(1.0, 10.0)
    assert [b.fail(100.0, "down") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.not_before == 110.0 and b.last_error == "down" and not b.due(109.9) and b.due(110.0)
    b.succeed()
    assert (b.failures, b.not_before, b.last_error) == (0, 0.0, "")
    assert b.fail(0.0) == 1.0


def test_jitter_stays_within_half_and_full_delay() -> None:
    b = jittered(2.0, 64.0)
    b.jitter = random.Random(5).random
    for n in range(1, 8):
        full = min(64.0, 2.0 * 2 ** (n - 1))
        delay = b.fail(0.0)
        assert full / 2 <= delay <= full
