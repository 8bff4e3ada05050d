"""Pruning archived transactions (a local snapshot) and getTips from its maintained table."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mam_client.models import ATTACHED, PREPARED, OutboxMessage
from mam_client.node import transaction as tx
from mam_client.node.prune import CURSOR_KEY, Pruner
from mam_client.node.server import serve_in_thread
from mam_client.node.settings import NodeSettings
from mam_client.node.store import Store
from scb.db import make_engine, make_sessionmaker, upgrade
from tests.mam_client.node.helpers import attached_bundle, ok

MWM = 1
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
#: getTips' query as it was before the tips table (what a store without it would run), for comparison
SCANNING_TIPS = (
    "SELECT t.hash FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM transactions a WHERE a.trunk=t.hash)"
    " AND NOT EXISTS (SELECT 1 FROM transactions b WHERE b.branch=t.hash) ORDER BY t.seq DESC LIMIT ?"
)


def parsed(trytes: list[str]) -> list[tx.Transaction]:
    return [tx.parse(t) for t in trytes]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tangle.sqlite3")
    yield s
    s.close()


@pytest.fixture
def hub(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'scb.sqlite3'}"
    upgrade(url)
    return make_sessionmaker(make_engine(url))


def chain(store: Store, n: int, address: str = "SCB" * 27) -> list[list[tx.Transaction]]:
    """`n` bundles, each approving the one before (as the publisher's attaches do), stored one by one."""
    bundles: list[list[tx.Transaction]] = []
    trunk = tx.NULL_HASH
    for i in range(n):
        b = parsed(attached_bundle(MWM, trunk=trunk, branch=trunk, address=address, message="M" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i % 26]))
        store.store(b)
        bundles.append(b)
        trunk = b[0].hash
    return bundles


def archive(hub: sessionmaker[Session], bundle: list[tx.Transaction], *, state: str = ATTACHED,
            attached_at: datetime = NOW - timedelta(hours=2)) -> int:
    with hub() as session, session.begin():
        msg = OutboxMessage(channel="readings", message="9", state=state, address=bundle[0].address,
                            tx_hashes=json.dumps([t.hash for t in bundle]),
                            bundle_trytes=json.dumps([t.trytes for t in bundle]),
                            attached_at=attached_at if state == ATTACHED else None)
        session.add(msg)
        session.flush()
        return int(msg.id)


def pruner(store: Store, hub: sessionmaker[Session], **kw: object) -> Pruner:
    return Pruner(store=store, hub=lambda: hub, prune_after_s=3600, now=lambda: NOW, **kw)  # type: ignore[arg-type]


def vm_steps(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    """SQLite virtual machine instructions a query takes: grows with the rows it visits."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 1)
    try:
        db.execute(sql, params).fetchall()
    finally:
        db.set_progress_handler(None, 1)
    return steps[0]


def test_tips_are_what_nothing_approves(store: Store) -> None:
    bundles = chain(store, 3)
    side = parsed(attached_bundle(MWM, trunk=bundles[0][0].hash, branch=bundles[0][0].hash, message="SIDE"))
    store.store(side)
    expected = [h for (h,) in store.db.execute(SCANNING_TIPS, (100,))]
    assert store.tips(100) == expected == [side[0].hash, bundles[2][0].hash]


def test_get_tips_reads_the_tips_table_not_the_tangle(store: Store) -> None:
    chain(store, 3)
    # a large tangle: 20,000 more transactions, every one approved by the next (none is a tip)
    rows = [(f"{i:081d}".replace("0", "A"), f"{i + 1:081d}".replace("0", "A")) for i in range(20_000)]
    store.db.execute("BEGIN")
    store.db.executemany(
        "INSERT INTO transactions (hash, trytes, address, bundle, tag, obsolete_tag, trunk, branch, current_index,"
        " last_index, arrival_ms) VALUES (?, '', '', '', '', '', ?, ?, 0, 0, 0)",
        [(h, prev, prev) for (prev, h) in ((rows[i - 1][0] if i else tx.NULL_HASH, rows[i][0])
                                           for i in range(len(rows)))])
    store.db.execute("COMMIT")
    plan = " | ".join(str(r[-1]) for r in store.db.execute("EXPLAIN QUERY PLAN " + Store.TIPS_SQL, (10,)))
    assert "tips" in plan and "transactions" not in plan, plan
    ours = vm_steps(store.db, Store.TIPS_SQL, (10,))
    scanning = vm_steps(store.db, SCANNING_TIPS, (10,))
    assert ours < 200, ours  # a few instructions per tip row, whatever the tangle's size
    assert scanning > 20_000, scanning  # the old query visits every transaction


def test_a_schema_1_file_gets_its_tips_table_filled(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    s = Store(path)
    bundles = chain(s, 2)
    s.db.execute("DELETE FROM tips")
    s.db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    s.close()
    s = Store(path)
    try:
        assert s.tips(10) == [bundles[1][0].hash]
        assert s.get_meta("schema") == "2"
    finally:
        s.close()


def test_archived_bundles_are_pruned_and_then_unknown(store: Store, hub: sessionmaker[Session]) -> None:
    bundles = chain(store, 4)
    foreign = parsed(attached_bundle(MWM, trunk=bundles[0][0].hash, branch=bundles[0][0].hash,
                                     address="FOREIGN" + "9" * 74, message="JUNK"))
    store.store(foreign)
    ids = [archive(hub, b) for b in bundles]
    result = pruner(store, hub).run_pass()
    # the newest bundle's tail is a tip and the tip candidate: kept; the three before it are pruned
    assert result.messages == 4 and result.pruned == 3
    assert store.get_trytes([b[0].hash for b in bundles]) == [None, None, None, bundles[3][0].trytes]
    assert store.find(addresses=["SCB" * 27]) == [bundles[3][0].hash]
    assert store.find(addresses=[foreign[0].address]) == [foreign[0].hash]  # never archived by the hub: kept
    assert store.get_meta(CURSOR_KEY) == str(ids[-1])
    with pytest.raises(Exception, match="missing or not a tail"):
        store.consistency([bundles[0][0].hash])
    # bundles[0] is still approved by the foreign bundle and bundles[2] by bundles[3]: solid entry points
    assert store.solid_entry_point_count() == 2
    # a new bundle approving a pruned transaction is solid and valid, as on IRI after a local snapshot
    late = parsed(attached_bundle(MWM, trunk=bundles[2][0].hash, branch=bundles[3][0].hash, message="LATE"))
    store.store(late)
    assert store.included([late[0].hash]) == [True]
    assert late[0].hash in store.tip_candidates(10)


def test_nothing_is_pruned_before_it_is_archived_long_enough(store: Store, hub: sessionmaker[Session]) -> None:
    bundles = chain(store, 4)
    archive(hub, bundles[0])
    archive(hub, bundles[1], state=PREPARED)  # not attached yet: blocks everything after it
    archive(hub, bundles[2])
    result = pruner(store, hub).run_pass()
    assert result.pruned == 1
    assert store.get_trytes([bundles[1][0].hash, bundles[2][0].hash]) == [bundles[1][0].trytes,
                                                                        bundles[2][0].trytes]
    young = Store(store.path)  # a second node's view, with a message attached only a minute ago
    try:
        with hub() as session, session.begin():
            session.get(OutboxMessage, 2).state = ATTACHED  # type: ignore[union-attr]
            session.get(OutboxMessage, 2).attached_at = NOW - timedelta(minutes=1)  # type: ignore[union-attr]
        assert pruner(young, hub).run_pass().pruned == 0
    finally:
        young.close()
    assert store.get_trytes([bundles[1][0].hash]) == [bundles[1][0].trytes]


def test_a_hold_limits_pruning_and_held_back_prunes_nothing(store: Store, hub: sessionmaker[Session]) -> None:
    bundles = chain(store, 4)
    ids = [archive(hub, b) for b in bundles]
    assert pruner(store, hub, held_back=True).run_pass().pruned == 0
    assert pruner(store, hub, holds=(lambda session: ids[0],)).run_pass().pruned == 1
    assert store.get_trytes([bundles[1][0].hash]) == [bundles[1][0].trytes]
    assert pruner(store, hub, holds=(lambda session: ids[2], lambda session: None)).run_pass().pruned == 2


def test_no_hub_database_yet_prunes_nothing(store: Store) -> None:
    chain(store, 2)
    p = Pruner(store=store, hub=lambda: None, prune_after_s=3600)
    assert p.run_pass().pruned == 0 and store.count() == 2


def test_the_api_answers_pruned_as_unknown(tmp_path: Path, hub: sessionmaker[Session]) -> None:
    settings = NodeSettings(db=tmp_path / "tangle.sqlite3", port=0, mwm=MWM)
    with serve_in_thread(settings) as node:
        first = attached_bundle(MWM, message="FIRST")
        ok(node.url, {"command": "storeTransactions", "trytes": first})
        second = attached_bundle(MWM, trunk=tx.parse(first[0]).hash, branch=tx.parse(first[0]).hash,
                                 message="SECOND")
        ok(node.url, {"command": "storeTransactions", "trytes": second})
        side = Store(settings.db)  # the node's file, as the pruning pass sees it
        try:
            archive(hub, parsed(first))
            assert pruner(side, hub).run_pass().pruned == 1
        finally:
            side.close()
        h = tx.parse(first[0]).hash
        assert ok(node.url, {"command": "getTrytes", "hashes": [h]})["trytes"] == [tx.NULL_TRANSACTION]
        found = ok(node.url, {"command": "findTransactions", "addresses": [tx.parse(first[0]).address]})
        assert found["hashes"] == [tx.parse(second[0]).hash]
        assert ok(node.url, {"command": "getInclusionStates", "transactions": [h]})["states"] == [False]
        assert ok(node.url, {"command": "getTips"})["hashes"] == [tx.parse(second[0]).hash]


def test_with_a_fleet_only_what_it_acknowledged_is_pruned(tmp_path: Path, store: Store,
                                                          hub: sessionmaker[Session]) -> None:
    from hub.fleet.models import FleetUploadCursor
    from hub.tangle_pruning import prune_holds
    from mam_client.node.cli import pruner_factory
    from scb.config import load_config

    bundles = chain(store, 4)
    ids = [archive(hub, b) for b in bundles]
    toml = tmp_path / "fleet.toml"
    toml.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n[fleet]\nurl = "https://fleet.example"\n')
    config = load_config(str(toml))
    settings = NodeSettings(db=store.path)
    # the node alone, with a fleet configured and no hold from the application layer: nothing at all
    alone = pruner_factory(config, settings)
    assert alone is not None and alone(store).held_back
    holds = prune_holds(config)
    assert len(holds) == 1
    with hub() as session:
        assert holds[0](session) == 0  # nothing uploaded yet
    p = pruner(store, hub, holds=holds)
    assert p.run_pass().pruned == 0
    with hub() as session, session.begin():
        session.add(FleetUploadCursor(stream="message", cursor=ids[1], sent=2, attempts=1))
    assert p.run_pass().pruned == 2
    assert store.get_trytes([bundles[2][0].hash]) == [bundles[2][0].trytes]
    assert prune_holds(load_config(None)) == ()  # no fleet: no hold


def test_the_plain_sqlite_reader_reads_the_rows_sqlalchemy_reads(tmp_path: Path, store: Store,
                                                                 hub: sessionmaker[Session]) -> None:
    """Without a fleet, the node reads the hub's SQLite file with plain sqlite3 (no SQLAlchemy in the process):
    the same rows, the same timestamps (naive UTC, as SQLAlchemy hands them back), the same decisions."""
    from mam_client.node.prune import SqliteMessages

    bundles = chain(store, 4)
    archive(hub, bundles[0], attached_at=datetime(2026, 6, 1, 9, 30, 15, 123456, tzinfo=timezone.utc))
    archive(hub, bundles[1])
    archive(hub, bundles[2], state=PREPARED)
    archive(hub, bundles[3])
    reader = SqliteMessages(tmp_path / "scb.sqlite3", busy_timeout_ms=1000)
    rows = reader.rows(0, 10)
    assert [(r[0], r[1]) for r in rows] == [(1, ATTACHED), (2, ATTACHED), (3, PREPARED), (4, ATTACHED)]
    assert rows[0][2] == datetime(2026, 6, 1, 9, 30, 15, 123456) and rows[2][2] is None
    assert json.loads(rows[1][3]) == [t.hash for t in bundles[1]]
    assert [(r[0], r[1], r[3]) for r in reader.rows(1, 2)] == [(2, ATTACHED, rows[1][3]), (3, PREPARED, rows[2][3])]
    assert rows == [tuple(r) for r in pruner(store, hub)._session_rows(hub, 0)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # a reader that cannot write
        reader.db.execute("DELETE FROM mam_messages")
    # pruned through the prepared message only, as with the session reader
    result = Pruner(store=store, hub=lambda: reader, prune_after_s=3600, now=lambda: NOW).run_pass()
    assert (result.messages, result.pruned) == (2, 2)
    assert store.get_meta(CURSOR_KEY) == "2"
    assert store.get_trytes([bundles[2][0].hash]) == [bundles[2][0].trytes]


def test_the_node_without_a_fleet_prunes_with_plain_sqlite(tmp_path: Path, store: Store,
                                                           hub: sessionmaker[Session]) -> None:
    from mam_client.node.cli import pruner_factory
    from mam_client.node.prune import SqliteMessages
    from scb.config import load_config

    bundles = chain(store, 3)
    for b in bundles:
        archive(hub, b)
    toml = tmp_path / "alone.toml"
    toml.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n')
    make = pruner_factory(load_config(str(toml)), NodeSettings(db=store.path, prune_after_s=3600))
    assert make is not None
    p = make(store)
    p.now = lambda: NOW
    assert isinstance(p.hub(), SqliteMessages)
    assert p.run_pass().pruned == 2
    assert store.get_trytes([b[0].hash for b in bundles]) == [None, None, bundles[2][0].trytes]
