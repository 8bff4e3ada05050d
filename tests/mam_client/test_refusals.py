"""A node that refuses is not a node that is down: the refused message blocks its channel, waits on a slow
schedule kept in the database, and is attached (refusal cleared) once the node accepts it. Fake tangle, moved
clocks; the real node's refusals are in test_refusal_node.py."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mam_client.fetch import fetch_chain
from mam_client.models import ATTACHED, PREPARED, Channel, OutboxMessage
from mam_client.outbox import blocked_channels, oldest_queued
from mam_client.publisher import LOOP_NAME
from scb.loop import Heartbeat, read_heartbeats
from tests.mam_client.fakes import EPOCH, Hub, make_hub

REASON = "Invalid minWeightMagnitude input: 3 is below this node's minimum weight magnitude 5"


@pytest.fixture()
def hub(tmp_path: Path) -> Hub:
    return make_hub(tmp_path)


def rows(hub: Hub, channel: str = "readings") -> list[OutboxMessage]:
    with hub.factory() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.channel == channel)
                              .order_by(OutboxMessage.id)))


def test_a_refused_message_blocks_its_channel_and_is_recorded(hub: Hub) -> None:
    ids = hub.enqueue("readings", 3)
    hub.enqueue("public", 2)
    for channel in ("readings", "public"):
        hub.publisher.prepare_one(channel)
    hub.tangle.refuse, hub.tangle.refuse_at = REASON, {rows(hub)[0].address}
    hub.publisher.run_once()
    first, second, third = rows(hub)
    assert first.state == PREPARED and first.refusal is not None and REASON in first.refusal
    assert first.refusals == 1 and first.attempts == 1
    assert first.refused_at.replace(tzinfo=EPOCH.tzinfo) == EPOCH
    assert first.retry_at.replace(tzinfo=EPOCH.tzinfo) == EPOCH + timedelta(seconds=60)
    assert first.last_error is None  # a refusal is not an outage
    assert (second.state, second.attempts, third.attempts) == (PREPARED, 0, 0)  # the chain cannot skip it
    assert hub.tangle.refused_calls == 1  # one try, then it waits
    assert [r.state for r in rows(hub, "public")] == [ATTACHED] * 2  # other channels are not held up
    with hub.factory() as s:
        blocked = blocked_channels(s)
    assert [(b.channel, b.message_id, b.refusals) for b in blocked] == [("readings", ids[0], 1)]
    readings = blocked[0]
    assert REASON in readings.reason and readings.since == EPOCH
    assert readings.retry_at == EPOCH + timedelta(seconds=60)
    assert readings.to_json()["since"] == "2026-11-22T12:00:00Z"


def test_the_slow_schedule_doubles_to_an_hour_and_never_spins(hub: Hub) -> None:
    hub.enqueue("readings", 2)
    hub.tangle.refuse = REASON
    hub.publisher.run_once()
    delays = []
    for _ in range(8):
        retry_at = rows(hub)[0].retry_at.replace(tzinfo=EPOCH.tzinfo)
        calls = hub.tangle.refused_calls
        # many polls just before the retry is due: no call to the node
        for before in (1.0, 0.5, 0.001):
            hub.clocks.t = (retry_at - EPOCH).total_seconds() - before
            hub.publisher.run_once()
        assert hub.tangle.refused_calls == calls
        hub.clocks.t = (retry_at - EPOCH).total_seconds()
        hub.publisher.run_once()
        assert hub.tangle.refused_calls == calls + 1
        delays.append((rows(hub)[0].retry_at.replace(tzinfo=EPOCH.tzinfo) - retry_at).total_seconds())
    assert delays == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    first = rows(hub)[0]
    assert first.refusals == 9 and first.refused_at.replace(tzinfo=EPOCH.tzinfo) == EPOCH  # since the first
    assert rows(hub)[1].attempts == 0


def test_the_schedule_survives_a_restart(hub: Hub) -> None:
    hub.enqueue("readings", 1)
    hub.tangle.refuse = REASON
    hub.publisher.run_once()
    hub.tangle.refuse = None  # fixed meanwhile; a restarted publisher still waits for the scheduled retry
    restarted = hub.new_publisher()
    hub.clocks.t = 59
    restarted.run_once()
    assert rows(hub)[0].state == PREPARED and hub.tangle.attach_calls == 1
    hub.clocks.t = 60
    assert restarted.run_once() == 1


def test_once_accepted_the_channel_moves_in_order_and_the_refusal_is_cleared(hub: Hub) -> None:
    hub.enqueue("readings", 3)
    hub.tangle.refuse = REASON
    hub.publisher.run_once()
    hub.clocks.t = 60
    hub.publisher.run_once()  # refused again
    hub.tangle.refuse = None
    hub.clocks.t = 60 + 120
    assert hub.publisher.run_once() == 3
    attached = rows(hub)
    assert [r.state for r in attached] == [ATTACHED] * 3 and [r.key_index for r in attached] == [0, 1, 2]
    assert all(r.refusal is None and r.refused_at is None and r.retry_at is None and r.refusals == 0
               for r in attached)
    assert all(len(hub.tangle.by_address[r.address]) == 1 for r in attached)
    with hub.factory() as s:
        assert blocked_channels(s) == []
        first_root = s.get(Channel, "readings").first_root
    key = hub.settings.channels["readings"].side_key_file.read_text().strip()
    assert [m.message for m in fetch_chain(hub.tangle, first_root, "restricted", key)] == [
        r.message for r in attached]


def test_a_refusal_after_an_outage_resets_the_outage_backoff(hub: Hub) -> None:
    hub.enqueue("readings", 1)
    hub.tangle.up = False
    hub.publisher.run_once()
    assert hub.publisher.backoff["readings"].failures == 1 and "down" in rows(hub)[0].last_error
    hub.tangle.up = True
    hub.tangle.refuse = REASON
    hub.clocks.t = 10
    hub.publisher.run_once()
    assert hub.publisher.backoff["readings"].failures == 0  # the node answers; only the slow schedule applies
    assert rows(hub)[0].refusal is not None


def test_oldest_queued_per_channel(hub: Hub) -> None:
    with hub.factory() as s:
        assert oldest_queued(s) == {}
    hub.enqueue("readings", 2)
    hub.enqueue("public", 1)
    with hub.factory() as s:
        created = {r.channel: r.created_at for r in reversed(s.scalars(select(OutboxMessage)).all())}
        oldest = oldest_queued(s)
    assert set(oldest) == {"readings", "public"}
    assert oldest["readings"] == created["readings"].replace(tzinfo=EPOCH.tzinfo)
    assert oldest["readings"].tzinfo is not None
    hub.tangle.refuse = REASON
    hub.publisher.run_once()  # prepared, refused: still waiting
    with hub.factory() as s:
        assert set(oldest_queued(s)) == {"readings", "public"}
    hub.tangle.refuse = None
    hub.clocks.t = 60
    hub.publisher.run_once()
    with hub.factory() as s:
        assert oldest_queued(s) == {}


def test_the_heartbeat_says_whether_the_node_answered(hub: Hub) -> None:
    heartbeat = Heartbeat(hub.root, "mam-client", min_interval_s=0)
    hub.publisher.heartbeat = heartbeat

    def reachable() -> object:
        return read_heartbeats(hub.root)["mam-client"]["loops"][LOOP_NAME]["detail"]["node_reachable"]

    hub.publisher.step()
    assert reachable() is None  # nothing to publish: no node call yet
    hub.enqueue("readings", 1)
    hub.tangle.up = False
    hub.publisher.step()
    assert reachable() is False
    hub.tangle.up = True
    hub.tangle.refuse = REASON
    hub.clocks.t = 100
    hub.publisher.step()
    assert reachable() is True  # a refusal is an answer
    hub.tangle.up = False
    hub.tangle.refuse = None
    hub.clocks.t = 200
    hub.publisher.step()
    assert reachable() is False
    hub.tangle.up = True
    hub.clocks.t = 400
    assert hub.publisher.step() == 0.0  # progress: go on at once
    assert reachable() is True


def test_a_reader_treats_a_refusing_node_as_one_it_cannot_read_from(hub: Hub) -> None:
    from mam_client.fetch import fetch_chain
    from scb.errors import NodeRefused, NodeUnavailable

    hub.enqueue("public", 1)
    hub.publisher.run_once()
    row = rows(hub, "public")[0]

    class Refusing:
        def attach(self, address: str, payload: str, tag: str) -> object:
            raise AssertionError("a reader does not attach")

        def find_bundles(self, address: str) -> list:
            raise NodeRefused("IOTA node fake: findTransactions refused (HTTP 401): COMMAND findTransactions is "
                              "not available on this node")

    archive = lambda address: [row.payload] if address == row.address else []  # noqa: E731
    read = list(fetch_chain(Refusing(), row.root, "public", None, archive=archive))
    assert [(m.message, m.source) for m in read] == [(row.message, "archive")]
    with pytest.raises(NodeUnavailable, match="refused .HTTP 401.*the local archive has no message"):
        list(fetch_chain(Refusing(), row.root, "public", None, archive=lambda a: []))


def test_an_outbox_from_before_migration_0003_upgrades_unrefused(tmp_path: Path) -> None:
    from sqlalchemy import text

    from scb.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mam_messages (channel, message, state, created_at, attempts) "
                          "VALUES ('readings', 'OLD', 'prepared', '2026-01-01 00:00:00', 2)"))
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT refusal, refused_at, refusals, retry_at, attempts FROM mam_messages")).one()
    engine.dispose()
    assert tuple(row) == (None, None, 0, None, 2)
