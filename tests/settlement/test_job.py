"""The settlement job against a real anvil: order, amounts, proofs, idempotency across crashes, chain outages,
a database behind the chain, stragglers."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest
from sqlalchemy import func, select, update
from web3.logs import DISCARD

from energy_manager.message import encode_window
from energy_manager.models import StoredReading
from energy_manager.reading import Reading
from mam_client.crypto.trits import ascii_to_trytes
from mam_client.outbox import enqueue
from scb.db import transaction
from scb.errors import ChainUnavailable
from settlement.models import (
    ABANDONED,
    PREPARED,
    SETTLED,
    SUBMITTED,
    ReadingProof,
    SettlementPeriod,
    SettlementTransaction,
)
from settlement.rpc import JsonRpcTransport
from tests.conftest import run_node
from tests.services.postgres import database_url, postgres_server, postgresql_url  # noqa: F401 (fixtures)
from tests.settlement.conftest import START_MS, Anvil, Hub, make_hub
from tests.web3_reference import call_of, contract_of, web3_of

HOUR_MS = 3600_000


def periods(hub: Hub) -> list[SettlementPeriod]:
    with hub.factory() as session:
        return list(session.scalars(select(SettlementPeriod).order_by(SettlementPeriod.period_id)))


def settled_events(hub: Hub) -> list[dict]:
    c = contract_of(hub.client, hub.system.contract)
    return [dict(e["args"]) for e in c.events.PeriodSettled().get_logs(from_block=0)]


def chain_period(hub: Hub, period_id: int):  # type: ignore[no-untyped-def]
    c = contract_of(hub.client, hub.system.contract)
    return c.functions.periodInfo(hub.system.system_id, period_id).call()


@pytest.fixture
def hub_on_each_backend(tmp_path, anvil: Anvil, database_url: str) -> Hub:  # type: ignore[no-untyped-def]
    """The in-process hub on SQLite and on PostgreSQL: the crash and adoption paths rest on the settlement row being
    written before the transaction is sent, with one writer at a time on either backend."""
    return make_hub(tmp_path, anvil.url, database__url=database_url)


def test_settles_closed_periods_in_order_with_amounts_from_the_registers(hub: Hub) -> None:
    hub.run_until(START_MS + 3 * HOUR_MS + 30 * 60_000)  # 03:30: periods 00-01, 01-02, 02-03 closed (lateness 15 min)
    report = hub.settle()
    assert report.settled == [1, 2, 3]
    events = settled_events(hub)
    assert [e["periodId"] for e in events] == [1, 2, 3]
    c = contract_of(hub.client, hub.system.contract)
    for row, event in zip(periods(hub), events):
        assert row.state == SETTLED
        assert event["end"] - event["start"] == 3600 and event["start"] % 3600 == 0
        with hub.factory() as session:
            readings = session.scalars(select(StoredReading).where(StoredReading.period == row.period_id)).all()
            # every reading whose timestamp lies in the period, and only those
            in_range = session.scalar(select(func.count(StoredReading.id)).where(
                StoredReading.ts_ms >= event["start"] * 1000, StoredReading.ts_ms < event["end"] * 1000))
        assert len(readings) == in_range == event["readingCount"]
        assert event["generationWh"] == sum(r.delta_wh for r in readings if r.circuit == "generation")
        used: dict[str, int] = defaultdict(int)
        for r in readings:
            if r.circuit == "consumption":
                used[r.party] += r.delta_wh
        assert [c["wh"] for c in json.loads(row.consumption_json)] == [used[p] for p in ("h1", "h2", "h3")]
        # the MAM root on chain is the root of the message that carries the period's first reading
        first_message = min(r.message_id for r in readings)
        from mam_client.models import OutboxMessage
        with hub.factory() as session:
            assert event["mamRoot"] == session.get(OutboxMessage, first_message).root
        # every stored proof is accepted by the contract's own MerkleProof check
        with hub.factory() as session:
            for r in readings:
                proof = session.get(ReadingProof, r.id)
                assert proof is not None and not proof.late
                assert c.functions.verifyReading(1, row.period_id, bytes.fromhex(r.digest), proof.siblings()).call()
    # the root on chain is the one @openzeppelin/merkle-tree computes for the same digests
    with hub.factory() as session:
        digests = [["0x" + d] for d in session.scalars(select(StoredReading.digest).where(StoredReading.period == 2))]
    tree = run_node("merkle_tree.js", {"trees": [{"values": digests, "encoding": ["bytes32"]}]})["trees"][0]
    assert tree["root"] == "0x" + bytes(chain_period(hub, 2)[0]).hex()
    # the bills follow the contract's formula from what we sent: min(consumed, generation * share) * price
    receipt = hub.client.receipt(periods(hub)[-1].tx_hash)
    (billed,) = c.events.Billed().process_receipt(receipt, errors=DISCARD)
    shares = c.functions.holderList(1).call()[1]
    consumption = [x["wh"] for x in json.loads(periods(hub)[-1].consumption_json)]
    generation = periods(hub)[-1].generation_wh
    expected = [min(u * 10_000, generation * s) * 10**15 // 10**7 for u, s in zip(consumption, shares)]
    assert list(billed["args"]["amounts"]) == expected


def test_waits_for_lateness_and_for_publication(hub: Hub) -> None:
    hub.run_until(START_MS + 55 * 60_000)
    hub.tangle.up = False  # the node goes down: the period's last window (00:45-01:00) cannot be attached
    hub.run_until(START_MS + HOUR_MS + 10 * 60_000)  # 01:10: period 00-01 ended, lateness (15 min) not over
    report = hub.settle()
    assert report.settled == [] and "closes at" in (report.waiting or "")
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    report = hub.settle()
    assert report.settled == []
    assert "not on the tangle yet" in (report.waiting or "")
    hub.tangle.up = True
    hub.publisher.backoff["readings"].succeed()
    hub.publisher.run_once()
    assert hub.settle().settled == [1]


def test_crash_after_signing_before_sending_settles_once(hub_on_each_backend: Hub,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hub = hub_on_each_backend
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    real_send = hub.client.send

    def crash(_signed):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(hub.client, "send", crash)
    with pytest.raises(KeyboardInterrupt):
        hub.settle()
    (row,) = periods(hub)
    assert row.state == SUBMITTED and row.tx_hash and row.raw_tx  # stored before sending
    monkeypatch.setattr(hub.client, "send", real_send)
    assert hub.settle().settled == [1]
    assert [e["periodId"] for e in settled_events(hub)] == [1]
    # the very transaction that was signed before the crash is the one on chain
    assert hub.client.receipt(row.tx_hash)["status"] == 1


def test_crash_after_sending_before_recording_settles_once(hub_on_each_backend: Hub,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    hub = hub_on_each_backend
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    real_wait = hub.settler._await

    def crash(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("killed while waiting for the receipt")

    monkeypatch.setattr(hub.settler, "_await", crash)
    with pytest.raises(KeyboardInterrupt):
        hub.settle()
    monkeypatch.setattr(hub.settler, "_await", real_wait)
    report = hub.settle()
    assert report.settled == [1, 2]
    assert [e["periodId"] for e in settled_events(hub)] == [1, 2]
    assert [p.state for p in periods(hub)] == [SETTLED, SETTLED]


def test_chain_down_backs_off_then_recovers(hub: Hub) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    # the chain down: every request (reads, estimates, sending) goes through the client's one transport
    transport = hub.client.transport
    assert isinstance(transport, JsonRpcTransport)
    good = transport.url
    transport.url = "http://127.0.0.1:9"  # nothing listens there
    report = hub.settler.run()
    assert report.settled == [] and "unreachable" in (report.waiting or "")
    assert hub.settler.backoff.failures == 1 and hub.settler.backoff.not_before > 0
    assert "backing off" in (hub.settler.run().waiting or "")  # inside the back-off window: no attempt
    with pytest.raises(ChainUnavailable):
        hub.settler.run(force=True)
    assert hub.settler.backoff.failures == 2
    transport.url = good
    assert hub.settler.run(force=True).settled == [1]
    assert hub.settler.backoff.failures == 0


def test_database_behind_the_chain_adopts_instead_of_billing_twice(hub_on_each_backend: Hub) -> None:
    hub = hub_on_each_backend
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1, 2]
    roots = {p.period_id: p.readings_root for p in periods(hub)}
    settled_by = {p.period_id: (p.mam_root, p.tx_hash, p.block_number) for p in periods(hub)}
    assert all(mam_root and tx and block for mam_root, tx, block in settled_by.values())
    # restore an "older backup": the database forgets both settlements
    with transaction(hub.factory) as session:
        session.query(ReadingProof).delete()
        session.query(SettlementTransaction).delete()
        session.query(SettlementPeriod).delete()
        session.execute(update(StoredReading).values(period=None))
    hub.run_until(START_MS + 3 * HOUR_MS + 20 * 60_000)
    report = hub.settle()
    assert report.adopted == [1, 2] and report.settled == [3]
    assert [e["periodId"] for e in settled_events(hub)] == [1, 2, 3]
    adopted = {p.period_id: p for p in periods(hub)}
    assert {k: adopted[k].readings_root for k in (1, 2)} == roots and adopted[1].last_error is None
    # the MAM root, transaction and block come from each period's PeriodSettled event
    assert {k: (adopted[k].mam_root, adopted[k].tx_hash, adopted[k].block_number) for k in (1, 2)} == settled_by
    c = contract_of(hub.client, hub.system.contract)
    with hub.factory() as session:
        reading = session.scalars(select(StoredReading).where(StoredReading.period == 2)).first()
        proof = session.get(ReadingProof, reading.id)
    assert c.functions.verifyReading(1, 2, bytes.fromhex(reading.digest), proof.siblings()).call()


def test_period_skipped_on_chain_is_abandoned_and_the_foreign_period_adopted(hub: Hub, monkeypatch) -> None:
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    real_send = hub.client.send
    monkeypatch.setattr(hub.client, "send", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        hub.settle()
    monkeypatch.setattr(hub.client, "send", real_send)
    (row,) = periods(hub)
    # someone else (a second hub with the same role) settles a later period first
    c = contract_of(hub.client, hub.system.contract)
    hub.client.transact(call_of(c, "settle", 1, 5, row.start_s, row.end_s, b"\x11" * 32, row.mam_root, 1, 0,
                                           [0, 0, 0]), "foreign settle")
    report = hub.settle()
    assert report.abandoned == [1]
    assert periods(hub)[0].state == ABANDONED
    # the foreign period covers the same hour: its readings count as settled there (never billed twice), but
    # they do not rebuild its root, so they have no proofs and the period says why
    assert report.adopted == [5]
    adopted = [p for p in periods(hub) if p.period_id == 5][0]
    assert "do not rebuild its root" in (adopted.last_error or "")
    with hub.factory() as session:
        in_range = session.scalars(select(StoredReading).where(StoredReading.ts_ms < row.end_s * 1000)).all()
        assert {r.period for r in in_range} == {5}
        assert session.scalar(select(func.count(ReadingProof.reading_id)).where(
            ReadingProof.reading_id.in_([r.id for r in in_range]))) == 0
    # the hub goes on after the foreign period, with the next id
    assert report.settled == [6]
    assert [e["periodId"] for e in settled_events(hub)] == [5, 6]


def test_straggler_is_anchored_late_in_the_next_period(hub: Hub) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1]
    # a meter that buffered a reading delivers it now, stamped inside period 1 (already settled)
    reading = Reading(hub="test-hub", meter="late-meter", party="h1", circuit="consumption",
                      ts_ms=START_MS + 30 * 60_000, register_wh=1000, power_w=5, seq=1,
                      salt="00112233445566778899aabbccddeeff")
    with transaction(hub.factory) as session:
        ((body, _),) = encode_window("test-hub", START_MS + 30 * 60_000, START_MS + 45 * 60_000, [reading], 16000)
        message = enqueue(session, "readings", ascii_to_trytes(body.decode("ascii")))
        session.add(StoredReading(hub="test-hub", meter="late-meter", seq=1, party="h1", circuit="consumption",
                                  ts_ms=reading.ts_ms, register_wh=1000, power_w=5, salt=reading.salt,
                                  canonical=reading.canonical(), digest=reading.digest().hex(), delta_wh=40, flags="",
                                  window_start_ms=START_MS + 30 * 60_000, message_id=message.id))
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [2]
    with hub.factory() as session:
        row = session.scalars(select(StoredReading).where(StoredReading.meter == "late-meter")).one()
        proof = session.get(ReadingProof, row.id)
    assert row.period == 2 and proof.late
    p2 = periods(hub)[1]
    assert p2.late_count == 1
    assert json.loads(p2.consumption_json)[0]["wh"] >= 40  # its energy is billed in period 2, once
    c = contract_of(hub.client, hub.system.contract)
    assert c.functions.verifyReading(1, 2, bytes.fromhex(row.digest), proof.siblings()).call()
    assert not c.functions.verifyReading(1, 1, bytes.fromhex(row.digest), proof.siblings()).call()


def test_a_root_conflict_is_never_resolved_silently(hub: Hub, monkeypatch) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    monkeypatch.setattr(hub.client, "send", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        hub.settle()
    monkeypatch.undo()
    (row,) = periods(hub)
    c = contract_of(hub.client, hub.system.contract)
    hub.client.transact(call_of(c, "settle", 1, 1, row.start_s, row.end_s, b"\x22" * 32, row.mam_root, 1, 0, [0, 0, 0]),
                        "foreign settle")
    report = hub.settler.run()
    assert "on chain with readings root 0x2222" in (report.waiting or "")
    assert periods(hub)[0].state in (PREPARED, SUBMITTED)
    assert "0x2222" in (periods(hub)[0].last_error or "")


def test_settle_has_gas_when_the_due_time_moves_between_estimate_and_block(hub: Hub) -> None:
    """Estimated in a block at time T, a bill due at T + grace extends the holder's last ledger entry; landing at
    T + 1 it needs a new slot per holder. Each transaction here lands a second after its estimate."""
    # until 13:30 in Madrid (1 January): the periods after sunrise bill every holder, so each gets debt entries
    hub.run_until(START_MS + 13 * HOUR_MS + 30 * 60_000)
    while hub.publisher.run_once():  # the publisher prepares a bounded batch per cycle
        pass
    send = hub.client.send

    def send_a_second_later(signed):  # type: ignore[no-untyped-def]
        hub.client.rpc("evm_increaseTime", [1])
        return send(signed)

    hub.client.send = send_a_second_later  # type: ignore[method-assign]
    settled: list[int] = []
    for _ in range(5):  # a run settles a bounded batch of periods
        settled += hub.settle().settled
    assert settled == list(range(1, 14))
    assert all(row.state == SETTLED for row in periods(hub))
    (billed,) = contract_of(hub.client, hub.system.contract).events.Billed().process_receipt(
        hub.client.receipt(periods(hub)[-1].tx_hash), errors=DISCARD)
    assert all(unpaid > 0 for unpaid in billed["args"]["unpaid"])  # the case this test is about: new debt
