"""The settlement under the failure policy (scb.loop): what each branch of the error tree does to the jobs, the
heartbeat, the hub account's record and the overdue-period reader, against a real anvil."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from energy_manager.models import EnergyState, StoredReading
from scb.community_clock import ClockAnchor, save_anchor
from scb.db import transaction
from scb.errors import ChainUnavailable
from scb.loop import Guard, Heartbeat, Waiting, read_heartbeats
from scb.retry import Backoff
from settlement.health import hub_account_state, oldest_unsettled_period
from settlement.job import Settler, load_json_state
from settlement.models import SettlementPeriod, SettlementSystem
from settlement.service import SETTLE, SettlementService, make_scheduler
from tests.settlement.conftest import START_MS, Anvil, Hub, hub_config, write_toml
from tests.settlement.test_verify import scb
from tests.web3_reference import call_of, contract_of, web3_of

HOUR_MS = 3600_000


class Fatal:
    """on_fatal for tests: records instead of exiting the process."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []

    def __call__(self, name: str, exc: BaseException) -> None:
        self.calls.append((name, exc))


def loop_state(hb: Heartbeat, name: str) -> Any:
    return hb.loops[name]


# ------------------------------------------------------------------------------------------------ Guard.run_once


def test_run_once_applies_the_policy_to_one_scheduler_job() -> None:
    now = {"t": 1000.0}
    hb = Heartbeat(None, "settlement", min_interval_s=0)
    fatal = Fatal()
    guard = Guard("job", hb, 5.0, on_fatal=fatal, backoff=Backoff(10.0, 60.0), clock=lambda: now["t"])
    calls: list[str] = []

    def step(outcome: Any) -> Any:
        def run() -> Any:
            calls.append("called")
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return run

    guard.run_once(step(Waiting("the chain refused: PeriodConflict")))
    assert hb.loops["job"].error == "the chain refused: PeriodConflict"  # shown while it lasts
    assert guard.backoff.failures == 0  # the step handled it: no second back-off
    guard.run_once(step(ChainUnavailable("node down")))
    assert "ChainUnavailable: node down" == hb.loops["job"].error and guard.backoff.failures == 1
    guard.run_once(step(None))
    assert len(calls) == 2  # backing off: the job's next run is skipped ...
    now["t"] += 10.0
    guard.run_once(step(None))
    assert len(calls) == 3 and hb.loops["job"].error is None  # ... and after the back-off it works again
    guard.run_once(step(sqlite3.OperationalError("database is locked")))
    assert fatal.calls == [] and guard.backoff.failures == 1
    now["t"] += 10.0
    guard.run_once(step(KeyError("a bug")))
    assert [(name, type(exc)) for name, exc in fatal.calls] == [("job", KeyError)]


# ------------------------------------------------------------------------------------------------ the service


def service_for(hub: Hub, **kw: Any) -> tuple[SettlementService, Fatal]:
    fatal = Fatal()
    hb = Heartbeat(Path(hub.config.data["hub"]["data_dir"]), "settlement", min_interval_s=0)
    return SettlementService(hub.config, clock=hub.clock, heartbeat=hb, on_fatal=fatal, **kw), fatal


def test_jobs_heartbeat_and_the_hub_account(hub: Hub) -> None:
    service, fatal = service_for(hub)
    w3 = web3_of(hub.client)
    service.run_job(SETTLE)  # starts: resolves the (stored) system, records the hub account
    with hub.factory() as session:
        account = hub_account_state(session)
    assert account is not None and account["account"] == hub.client.sender
    assert account["balance_wei"] == w3.eth.get_balance(hub.client.sender)
    assert account["gas_price_wei"] == w3.eth.gas_price and account["settle_gas_source"] == "estimate"
    assert abs(account["checked_at"] - time.time()) < 600

    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    service.run_job(SETTLE)
    with hub.factory() as session:
        row = session.scalars(select(SettlementPeriod)).one()
        account = hub_account_state(session)
    assert row.period_id == 1 and row.state == "settled"
    receipt = w3.eth.get_transaction_receipt(row.tx_hash)
    assert account is not None and account["settle_gas"] == receipt["gasUsed"]
    assert account["settle_gas_source"] == "receipt"
    assert account["balance_wei"] == w3.eth.get_balance(hub.client.sender)  # after paying for the settlement
    beat = read_heartbeats(Path(hub.config.data["hub"]["data_dir"]))["settlement"]
    assert beat["loops"]["settle"]["error"] is None and beat["loops"]["settle"]["detail"]["settled"] == 1

    # a database failure: backed off in memory and shown, the process goes on
    assert service.settler is not None

    def locked(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("UPDATE settlement_state", {}, sqlite3.OperationalError("database is locked"))

    service.settler.run = locked  # type: ignore[method-assign]
    service.run_job(SETTLE)
    assert fatal.calls == [] and service.guards[SETTLE].backoff.failures == 1
    assert "database is locked" in (service.heartbeat.loops[SETTLE].error or "")
    # an unexpected error: the policy ends the process (here: recorded)
    service.guards[SETTLE].backoff.succeed()

    def bug(*_a: Any, **_k: Any) -> Any:
        raise ZeroDivisionError("a bug")

    service.settler.run = bug  # type: ignore[method-assign]
    service.run_job(SETTLE)
    assert [(name, type(exc)) for name, exc in fatal.calls] == [(SETTLE, ZeroDivisionError)]
    service.close()


def test_the_scheduler_beats_while_the_jobs_idle(hub: Hub) -> None:
    import settlement.service as module

    hub.config.data["settlement"].update({"check_interval_s": 3600, "supply_interval_s": 3600})
    service, fatal = service_for(hub)
    data_dir = Path(hub.config.data["hub"]["data_dir"])
    module._service = service
    scheduler = make_scheduler(service)
    scheduler.start()
    try:
        # every job runs once at start; then only the heartbeat job: the beat moves on while settle and supply wait
        deadline = time.monotonic() + 60
        first = None
        while time.monotonic() < deadline:
            beat = read_heartbeats(data_dir).get("settlement")
            if beat and {"settle", "supply"} <= set(beat["loops"]) and beat["loops"]["supply"]["ok_at"]:
                first = first or beat["loops"]["settle"]["beat"]
                if beat["loops"]["settle"]["beat"] > first:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the settlement's heartbeat did not move while its jobs waited")
        assert {job.id for job in scheduler.get_jobs()} == {"settle", "supply", "heartbeat"}
        assert fatal.calls == []
    finally:
        scheduler.shutdown(wait=True)
        module._service = None
        service.close()


def test_a_period_conflict_waits_on_the_slow_schedule_and_is_shown(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    service, fatal = service_for(hub)
    service.run_job(SETTLE)  # settles period 1
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert service.settler is not None
    monkeypatch.setattr(service.client, "send", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # period 2 signed and stored, never sent
        service.settler.run(force=True)
    monkeypatch.undo()
    with hub.factory() as session:
        row = session.scalars(select(SettlementPeriod).where(SettlementPeriod.period_id == 2)).one()
    c = contract_of(hub.client, hub.system.contract)
    hub.client.transact(call_of(c, "settle", 1, 2, row.start_s, row.end_s, b"\x33" * 32, row.mam_root, 1, 0, [0, 0, 0]),
                        "another hub settles period 2")
    before = time.time()
    service.run_job(SETTLE)
    settler = service.settler
    assert fatal.calls == [] and settler.trouble == "conflict"
    assert "on chain with readings root 0x3333" in (service.heartbeat.loops[SETTLE].error or "")
    # the slow end of the back-off at once, not the next step of a doubling: the same request gets the same answer
    assert settler.backoff.not_before >= before + service.settings.retry_max_s
    with hub.factory() as session:
        stored = load_json_state(session, f"settle-backoff:{hub.system.ref}")
        assert stored is not None and stored["kind"] == "conflict" and "0x3333" in stored["last_error"]
        assert "0x3333" in (session.get(SettlementPeriod, row.id).last_error or "")
    tried: list[int] = []
    monkeypatch.setattr(settler, "settle_closed", lambda report: tried.append(1))
    service.run_job(SETTLE)
    assert tried == []  # not retried as if it were transient
    assert "0x3333" in (service.heartbeat.loops[SETTLE].error or "")  # and still shown
    service.close()


def test_wrong_data_stops_settling_until_a_restart(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    with transaction(hub.factory) as session:
        reading = session.scalars(select(StoredReading).order_by(StoredReading.id).limit(1)).one()
        good = reading.canonical
        reading.canonical = good.replace(b'"power_w":', b'"power_w":1')  # no longer what its digest says
        assert reading.canonical != good
    report = hub.settler.run()
    assert report.trouble == "blocked" and "is corrupt" in (report.waiting or "")
    tried: list[int] = []
    real = hub.settler.settle_closed
    monkeypatch.setattr(hub.settler, "settle_closed", lambda r: tried.append(1))
    assert hub.settler.run().trouble == "blocked" and tried == []  # never retried in this process
    monkeypatch.setattr(hub.settler, "settle_closed", real)
    with hub.factory() as session:
        assert load_json_state(session, f"settle-backoff:{hub.system.ref}")["kind"] == "blocked"
    with transaction(hub.factory) as session:  # the operator repairs the reading and restarts the service
        session.execute(update(StoredReading).where(StoredReading.id == reading.id).values(canonical=good))
    restarted = Settler(hub.factory, hub.client, hub.system, hub_id="test-hub", period_s=3600, lateness_s=900,
                        clock=hub.clock, chain_clock=hub.settler.chain_clock)
    assert restarted.run().settled == [1]
    with hub.factory() as session:
        assert load_json_state(session, f"settle-backoff:{hub.system.ref}")["kind"] is None


def test_a_reset_chain_is_resolved_again(hub: Hub) -> None:
    service, fatal = service_for(hub)
    service.run_job(SETTLE)
    old = service.system
    assert old is not None
    hub.client.rpc("anvil_reset", [])  # the development chain starts over: the contract is gone
    service.run_job(SETTLE)
    assert service.system is None and fatal.calls == []  # NoContract: forget the system ...
    service.run_job(SETTLE)
    assert service.system is not None and service.system.contract != old.contract  # ... deploy and register anew
    assert hub.client.has_code(service.system.contract)
    with hub.factory() as session:
        assert len(session.scalars(select(SettlementSystem)).all()) == 2
    service.close()


def test_a_configuration_error_ends_the_process_with_one_line(anvil: Anvil, tmp_path: Path) -> None:
    config = hub_config(tmp_path, anvil.url)
    config.data["ethereum"]["chain_id"] = 5  # the node serves 31337
    done = scb("--config", str(write_toml(config, tmp_path / "scb.toml")), "settlement")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("scb: ") and "ethereum.chain_id is 5" in last and "31337" in last
    beat = read_heartbeats(Path(config.data["hub"]["data_dir"]))["settlement"]
    assert "chain_id is 5" in beat["loops"]["settle"]["error"] or "chain_id is 5" in beat["loops"]["supply"]["error"]


# ------------------------------------------------------------------------------------------------ overdue periods


def test_oldest_closed_period_not_settled(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    def oldest(now: float):  # type: ignore[no-untyped-def]
        with hub.factory() as session:
            return oldest_unsettled_period(session, hub_id="test-hub", period_s=3600, lateness_s=900,
                                           real_time=False, now=now)

    hub.run_until(START_MS + HOUR_MS + 20 * 60_000)
    assert oldest(time.time()) is None  # no anchor: the accelerated community clock never ran
    wall_ms = 1_800_000_000_000
    wall_s = wall_ms / 1000
    with transaction(hub.factory) as session:  # community 01:00 at that wall instant, 3600x
        save_anchor(session, EnergyState, ClockAnchor(START_MS + HOUR_MS, wall_ms, 3600.0))
    found = oldest(wall_s + 0.5)  # community 01:30
    start_s = START_MS // 1000
    assert found is not None and found.period_id is None and found.state == "unprepared"
    assert (found.start_s, found.end_s, found.closed_community_s) == (start_s, start_s + 3600, start_s + 4500)
    # period 1 closed at community 01:15: 15 community minutes = a quarter of a real second after the anchor
    assert found.closed_at == pytest.approx(wall_s + 0.25)
    assert oldest(wall_s + 0.2) is None  # at community 01:12 it had not closed yet

    assert hub.settle().settled == [1]
    assert oldest(wall_s + 1.0) is None  # at 02:00: period 2 [01:00, 02:00) closes at 02:15

    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    monkeypatch.setattr(hub.client, "send", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        hub.settle()  # period 2 prepared and signed, not sent
    found = oldest(wall_s + 2.0)  # community 03:00
    assert found is not None and (found.period_id, found.state) == (2, "submitted")
    assert found.closed_at == pytest.approx(wall_s + 1.25)  # 02:15
    stray = json.dumps(found.__dict__)  # plain values: what a status layer serialises
    assert '"state": "submitted"' in stray
