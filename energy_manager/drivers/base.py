"""The device interface every driver implements."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class DeviceSample:
    """The values a device reported, and when (UTC ms on the community clock)."""

    ts_ms: int
    values: Mapping[str, float]
    #: the raw input the values came from (a serial line), for log messages about this sample
    raw: bytes | None = None


class LatestFrame:
    """The newest good input of a polled device, handed to the sampling loop at most once (thread-safe).

    Why "at most once": a device's reader thread may be slower than the sampling loop; a sample must never count
    one frame twice. Why only the newest: values are cumulative registers and present power, so an older frame
    adds nothing the newer one does not carry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sample: DeviceSample | None = None
        self._fresh = False

    def put(self, ts_ms: int, values: Mapping[str, float], raw: bytes | None) -> None:
        with self._lock:
            self._sample, self._fresh = DeviceSample(ts_ms=ts_ms, values=dict(values), raw=raw), True

    def take(self) -> DeviceSample | None:
        """The newest frame if it was not taken yet, else None."""
        with self._lock:
            fresh, self._fresh = self._fresh, False
            return self._sample if fresh else None


@dataclass(frozen=True)
class InputEvent:
    """Something to count and log: bad input, a device lost or back. `kind` is the counter's name."""

    kind: str
    detail: str
    raw: bytes | None = None


@dataclass
class EventBuffer:
    """Thread-safe list of events: driver threads add, the sampling loop takes them in its transaction."""

    _items: list[InputEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    limit: int = 10_000

    def add(self, event: InputEvent) -> None:
        with self._lock:
            if len(self._items) < self.limit:  # a flood of noise must not eat the hub's memory
                self._items.append(event)

    def take(self) -> list[InputEvent]:
        with self._lock:
            items, self._items = self._items, []
        return items


class Device(ABC):
    """A source of values. Implementations must never raise out of `read` for bad input or a missing device:
    they report it as events and return None, so one broken meter never stops the others."""

    driver: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name
        self.events = EventBuffer()

    def open(self) -> None:
        """Start talking to the device (open ports, start reader threads). An absent device is not an error:
        the driver keeps retrying and reports it as events."""

    @abstractmethod
    def read(self, now_ms: int) -> DeviceSample | None:
        """The newest values not returned before, or None when there is nothing new."""

    def take_events(self) -> list[InputEvent]:
        return self.events.take()

    def checkpoint(self) -> dict[str, Any] | None:
        """State to persist with each sample (None: the driver has none)."""
        return None

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a persisted checkpoint."""

    def close(self) -> None:
        """Stop threads and close ports; idempotent."""
