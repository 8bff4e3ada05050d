"""Exponential backoff for work that waits on a peer (the IOTA node, the Ethereum RPC).

Why one class: the publisher and the settlement both retry while their peer is down; the same rule (double the
delay per failure up to a ceiling, forget on success) and the same state (failures, next attempt, last error)
make their behaviour and `scb status` consistent. Jitter spreads the retries of hubs that lost the same node.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float
    maximum: float
    failures: int = 0
    not_before: float = 0.0
    last_error: str = ""
    #: None: exact delays; otherwise a source of [0, 1) floats that scales each delay into [50 %, 100 %]
    jitter: Callable[[], float] | None = field(default=None, repr=False)

    def fail(self, now: float, error: str = "") -> float:
        """Record a failure at `now`; returns the delay until the next attempt (also in `not_before`)."""
        self.failures += 1
        delay = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        if self.jitter is not None:
            delay *= 0.5 + self.jitter() / 2
        self.not_before = now + delay
        self.last_error = error
        return delay

    def succeed(self) -> None:
        self.failures, self.not_before, self.last_error = 0, 0.0, ""

    def due(self, now: float) -> bool:
        return now >= self.not_before


def jittered(initial: float, maximum: float) -> Backoff:
    return Backoff(initial, maximum, jitter=random.random)
