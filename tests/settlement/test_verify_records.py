"""hub.verify_records (plain SQL) answers what the models' queries answer, on SQLite (sqlite3 and SQLAlchemy) and
PostgreSQL (SQLAlchemy), over a hub with a settled period. The ORM functions are the reference."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from energy_manager.models import StoredReading
from hub import verify_records as records
from mam_client.archive import archive_reader, root_lookup
from mam_client.models import PAYLOAD, OutboxMessage
from scb.sqlite_reader import connect_read_only, sqlite_path
from settlement import models
from settlement.logscan import DeploymentStore
from settlement.system import newest_system
from settlement.verify import ReadingKey
from tests.services.postgres import database_url, postgres_server  # noqa: F401 (fixtures)
from tests.settlement.conftest import START_MS, Anvil, make_hub

HOUR_MS = 3600_000


def key(reading: StoredReading) -> ReadingKey:
    return ReadingKey(reading.digest, reading.hub, reading.meter, reading.seq, reading.ts_ms)


def test_the_sql_answers_what_the_models_answer(tmp_path: Path, anvil: Anvil, database_url: str) -> None:  # noqa: F811
    hub = make_hub(tmp_path, anvil.url, database__url=database_url)
    hub.run_until(START_MS + HOUR_MS + 40 * 60_000)
    assert hub.settle().settled == [1]
    assert records.SETTLED == models.SETTLED and records.PAYLOAD == PAYLOAD
    readers = [records.session_rows(hub.factory)]
    path = sqlite_path(database_url)
    conn = connect_read_only(path, 5000) if path is not None else None
    if conn is not None:
        readers.append(records.sqlite_rows(conn))
    with hub.factory() as session:
        messages = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        readings = list(session.scalars(select(StoredReading).order_by(StoredReading.id)))
        proofs = {p.reading_id: p for p in session.scalars(select(models.ReadingProof))}
    expected_system = newest_system(hub.factory)
    assert expected_system is not None
    try:
        for rows in readers:
            system = records.newest_system(rows)
            assert system is not None
            assert (system.ref, system.contract, system.system_id) == (
                expected_system.ref, expected_system.contract, expected_system.system_id)
            assert records.newest_system(rows, "0x" + "00" * 20) is None
            for message in messages[:3] + [messages[-1]]:
                assert records.archive(rows)(message.address) == archive_reader(hub.factory)(message.address)
                assert records.root_lookup(rows)(message.address) == root_lookup(hub.factory)(message.address)
            assert records.root_lookup(rows)("9" * 81) is None
            first = readings[0]
            # a key the hub has with another digest (a reading changed after it left the hub), and an unknown key
            found = records.readings_lookup(rows, system.ref)(
                [key(r) for r in readings] + [ReadingKey("ab" * 32, first.hub, first.meter, first.seq, first.ts_ms),
                                              ReadingKey("cd" * 32, first.hub, first.meter, 10 ** 9, first.ts_ms)])
            assert found["ab" * 32] is None and found["cd" * 32] is None
            # asked alone, the changed reading's key finds nothing: the row at its place has another digest
            changed = ReadingKey("ab" * 32, first.hub, first.meter, first.seq, first.ts_ms)
            assert records.readings_lookup(rows, system.ref)([changed]) == {"ab" * 32: None}
            settled = 0
            for reading in readings:
                record = found[reading.digest]
                assert record is not None and record.reading_id == reading.id
                proof = proofs.get(reading.id)
                if proof is None:  # not anchored yet: the hub knows it, unsettled
                    assert (record.period_id, record.proof) == (None, None)
                    continue
                settled += 1
                assert record.proof == proof.siblings() and record.late == proof.late and record.period_id == 1
            assert 0 < settled < len(readings)  # both kinds were asked
            other = records.readings_lookup(rows, system.ref + 1)([key(r) for r in readings])
            assert all(r is not None and r.period_id is None for r in other.values())
            store = DeploymentStore(hub.factory)
            chain_id, contract = hub.client.chain_id, hub.system.contract
            assert records.DeploymentBlocks(rows).load(chain_id, contract) == store.load(chain_id, contract)
            assert store.load(chain_id, contract) is not None
    finally:
        if conn is not None:
            conn.close()
