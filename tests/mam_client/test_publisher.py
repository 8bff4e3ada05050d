"""Publisher logic against an in-memory tangle (refusals: test_refusals.py; the real node: test_transport_node.py)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from mam_client.fetch import fetch_chain
from mam_client.models import ATTACHED, PREPARED, QUEUED, Channel, OutboxMessage
from mam_client.outbox import enqueue
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from mam_client.transport import FoundBundle
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, transaction, upgrade
from scb.errors import ConfigError, NodeUnavailable
from tests.mam_client.fakes import RefusingTangle
from tests.memory_tangle import MemoryTangle


@pytest.fixture()
def hub(tmp_path: Path, database_url: str):
    config = Config(data={"hub": {"data_dir": str(tmp_path)}, "database": {"url": database_url},
                          "mam": {"channels": {"readings": {"security": 1}, "public": {"mode": "public",
                                                                                       "security": 1}},
                                  "backoff_initial_s": 1.0, "backoff_max_s": 8.0}})
    engine = make_engine(config.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    settings = mam_settings(config)
    tangle = MemoryTangle()
    now = [0.0]
    publisher = Publisher(factory, settings, tangle, clock=lambda: now[0])
    publisher.ensure_channels()
    return config, factory, settings, tangle, publisher, now


def enqueue_n(factory, channel: str, n: int) -> list[int]:
    ids = []
    with transaction(factory) as s:
        for i in range(n):
            ids.append(enqueue(s, channel, "MSG" + "ABCDEFGHIJ"[i % 10] * (i // 10 + 1)).id)
    return ids


def test_secrets_are_files_with_mode_0600(hub) -> None:
    config, _f, settings, *_ = hub
    for ch in settings.channels.values():
        assert ch.seed_file.stat().st_mode & 0o777 == 0o600
    assert settings.channels["readings"].side_key_file.stat().st_mode & 0o777 == 0o600
    assert settings.channels["public"].side_key_file is None


def test_publishes_in_order_and_chain_reads_back(hub) -> None:
    config, factory, settings, tangle, publisher, _ = hub
    ids = enqueue_n(factory, "readings", 5)
    assert publisher.run_once() == 5
    with factory() as s:
        rows = [s.get(OutboxMessage, i) for i in ids]
        first_root = s.get(Channel, "readings").first_root
    assert all(r.state == ATTACHED for r in rows)
    assert [r.key_index for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].root == first_root
    for a, b in zip(rows, rows[1:]):
        assert a.next_root == b.root
    key = settings.channels["readings"].side_key_file.read_text().strip()
    read = [m.message for m in fetch_chain(tangle, first_root, "restricted", key)]
    assert read == [r.message for r in rows]


def test_prepared_state_is_written_before_sending(hub) -> None:
    _c, factory, _s, tangle, publisher, _ = hub
    tangle.up = False
    enqueue_n(factory, "readings", 3)
    publisher.run_once()
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        state = json.loads(s.get(Channel, "readings").state_json)
    assert [r.state for r in rows] == [PREPARED] * 3
    assert state["start"] == 3  # advanced before anything reached the node
    assert rows[0].attempts == 1 and "down" in rows[0].last_error
    assert rows[1].attempts == 0  # order: later messages wait for the first


def test_backoff_then_recovery_keeps_order_and_never_resigns(hub) -> None:
    _c, factory, _s, tangle, publisher, now = hub
    tangle.up = False
    enqueue_n(factory, "readings", 4)
    publisher.run_once()
    with factory() as s:
        payloads = [r.payload for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    delays = []
    for _ in range(4):
        before = publisher.backoff["readings"].not_before
        now[0] = before  # time passes until the next retry is due
        publisher.run_once()
        delays.append(publisher.backoff["readings"].not_before - before)
    assert delays[-1] > delays[0]  # exponential
    assert all(d <= 8.0 for d in delays)  # capped
    tangle.up = True
    now[0] += 100
    assert publisher.run_once() == 4
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [r.payload for r in rows] == payloads  # the same prepared payloads, not re-signed
    addresses = [r.address for r in rows]
    assert sum(len(tangle.by_address[a]) for a in addresses) == 4


def test_lost_answer_is_adopted_not_duplicated(hub) -> None:
    _c, factory, _s, tangle, publisher, now = hub
    enqueue_n(factory, "readings", 1)
    tangle.lose_answer = True
    publisher.run_once()
    tangle.lose_answer = False
    now[0] += 100
    publisher.run_once()
    with factory() as s:
        row = s.scalars(select(OutboxMessage)).one()
    assert row.state == ATTACHED
    assert len(tangle.by_address[row.address]) == 1  # found on the node and adopted, not attached again


def test_junk_bundle_is_skipped_and_reported(hub) -> None:
    _c, factory, settings, tangle, publisher, _ = hub
    enqueue_n(factory, "public", 2)
    publisher.run_once()
    with factory() as s:
        first = s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "public")
                          .order_by(OutboxMessage.id)).first()
    junk = FoundBundle("J" * 81, ("J" * 81,), ("9" * 2673,), "JUNK" * 600)
    tangle.by_address[first.address].insert(0, junk)
    skipped = []
    read = list(fetch_chain(tangle, first.root, "public", None, on_skip=skipped.append))
    assert [m.message for m in read][0] == first.message and len(read) == 2
    assert len(skipped) == 1 and skipped[0].bundle_hash == "J" * 81


def test_archive_fallback_when_node_pruned(hub) -> None:
    _c, factory, _s, tangle, publisher, _ = hub
    enqueue_n(factory, "public", 1)
    publisher.run_once()
    with factory() as s:
        row = s.scalars(select(OutboxMessage)).one()
    tangle.by_address.clear()  # the node pruned it
    archive = lambda address: [row.payload] if address == row.address else []  # noqa: E731
    read = list(fetch_chain(tangle, row.root, "public", None, archive=archive))
    assert read[0].source == "archive" and read[0].message == row.message
    tangle.up = False
    assert list(fetch_chain(tangle, row.root, "public", None, archive=archive, follow=False))[0].source == "archive"
    with pytest.raises(NodeUnavailable):
        list(fetch_chain(tangle, row.root, "public", None, archive=lambda a: []))
    notes: list[str] = []
    walked = list(fetch_chain(tangle, row.root, "public", None, archive=archive, on_note=notes.append))
    assert [m.source for m in walked] == ["archive"] and "may continue" in notes[0]


def test_seed_without_state_is_refused(hub, tmp_path: Path) -> None:
    config, factory, settings, tangle, _p, _ = hub
    engine = make_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    upgrade(engine)
    other = Publisher(make_sessionmaker(engine), settings, tangle)
    with pytest.raises(ConfigError, match="one-time"):
        other.ensure_channels()


def test_mode_change_is_refused(hub) -> None:
    config, factory, settings, tangle, _p, _ = hub
    changed = mam_settings(Config(data={"hub": config.data["hub"],
                                        "mam": {"channels": {"readings": {"security": 2}}}}))
    with pytest.raises(ConfigError, match="cannot change"):
        Publisher(factory, changed, tangle).ensure_channels()


def test_config_errors_are_clear(tmp_path: Path) -> None:
    for channels, match in [({"x": {"mode": "secret"}}, "mode"), ({"x": {"security": 5}}, "security"),
                            ({"x": {"count": 3}}, "power of two"), ({"x": {"colour": 1}}, "unknown"),
                            ({"bad name!": {}}, "letters"), ({"x": {"mode": "public", "side_key_file": "k"}},
                                                             "restricted")]:
        with pytest.raises(ConfigError, match=match):
            mam_settings(Config(data={"hub": {"data_dir": str(tmp_path)}, "mam": {"channels": channels}}))


def test_enqueue_refuses_bad_messages(hub) -> None:
    _c, factory, *_ = hub
    from mam_client.mam import InvalidInput

    with transaction(factory) as s:
        for bad in ("", "lower", "A" * 70000):
            with pytest.raises(InvalidInput):
                enqueue(s, "readings", bad)
    with factory() as s:
        assert s.scalars(select(OutboxMessage)).all() == []


def test_a_stop_ends_the_cycle_between_messages(hub) -> None:
    """SIGTERM while a backlog drains: the message being attached is finished, the rest waits for the next start."""
    config, factory, settings, _tangle, _publisher, _ = hub
    tangle = RefusingTangle()
    publisher = Publisher(factory, settings, tangle)
    publisher.ensure_channels()
    publisher.stop = threading.Event()
    tangle.on_attach = lambda _calls: publisher.stop.set()
    ids = enqueue_n(factory, "readings", 4)
    assert publisher.run_once() == 1
    with factory() as s:
        assert [s.get(OutboxMessage, i).state for i in ids] == [ATTACHED, PREPARED, PREPARED, PREPARED]
    publisher.stop.clear()
    tangle.on_attach = None
    assert publisher.run_once() == 3 and tangle.attach_calls == 4
