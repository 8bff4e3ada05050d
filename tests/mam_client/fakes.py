"""Fakes for the publisher's tests: a tangle that can refuse, clocks the test moves, a hub on a SQLite file."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mam_client.outbox import enqueue
from mam_client.publisher import Publisher
from mam_client.settings import MamSettings, mam_settings
from mam_client.transport import FoundBundle
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, transaction, upgrade
from scb.errors import NodeRefused
from tests.memory_tangle import MemoryTangle

EPOCH = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


class RefusingTangle(MemoryTangle):
    """MemoryTangle that refuses attachments (HTTP 400 with `refuse` as the node's reason) while `refuse` is set -
    at every address, or only at `refuse_at` if given - and calls `on_attach` (after storing, before answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: str | None = None
        self.refuse_at: set[str] | None = None
        self.refused_calls = 0
        self.on_attach: Callable[[int], None] | None = None

    def attach(self, address: str, payload: str, tag: str) -> FoundBundle:
        if self.refuse is not None and (self.refuse_at is None or address in self.refuse_at):
            self.attach_calls += 1
            self.refused_calls += 1
            raise NodeRefused(f"IOTA node fake: attachToTangle refused (HTTP 400): {self.refuse}")
        bundle = super().attach(address, payload, tag)
        if self.on_attach is not None:
            self.on_attach(self.attach_calls)
        return bundle


@dataclass
class Clocks:
    """The publisher's two clocks, moved by the test: monotonic seconds and UTC wall time (from EPOCH)."""

    t: float = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)


@dataclass
class Hub:
    root: Path
    config: Config
    engine: Engine
    factory: sessionmaker[Session]
    settings: MamSettings
    tangle: RefusingTangle
    clocks: Clocks
    publisher: Publisher

    @property
    def db_path(self) -> Path:
        return self.root / "scb.sqlite3"

    def new_publisher(self) -> Publisher:
        """A publisher as a restarted process would make it (same database, same channels)."""
        publisher = Publisher(self.factory, self.settings, self.tangle, clock=self.clocks.monotonic,
                              wallclock=self.clocks.wall)
        publisher.ensure_channels()
        return publisher

    def enqueue(self, channel: str, n: int, start: int = 0) -> list[int]:
        with transaction(self.factory) as s:
            return [enqueue(s, channel, "MSG" + "".join("ABCDEFGHIJ"[int(d)] for d in str(i))).id
                    for i in range(start, start + n)]


def make_hub(root: Path, channels: dict | None = None, **mam: object) -> Hub:
    config = Config(data={"hub": {"data_dir": str(root)},
                          "mam": {"channels": channels or {"readings": {"security": 1},
                                                           "public": {"mode": "public", "security": 1}},
                                  "backoff_initial_s": 1.0, "backoff_max_s": 8.0, **mam}})
    engine = make_engine(f"sqlite:///{root / 'scb.sqlite3'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    settings = mam_settings(config)
    tangle = RefusingTangle()
    clocks = Clocks()
    publisher = Publisher(factory, settings, tangle, clock=clocks.monotonic, wallclock=clocks.wall)
    publisher.ensure_channels()
    return Hub(root, config, engine, factory, settings, tangle, clocks, publisher)
