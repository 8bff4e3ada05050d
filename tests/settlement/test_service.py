"""The settlement service and the operator commands, run as a user would."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from energy_manager.clock import ClockAnchor
from energy_manager.monitor import save_state
from energy_manager.service import CLOCK_STATE_KEY
from scb.db import transaction
from settlement.models import SettlementSystem
from settlement.service import SettlementService, make_scheduler
from tests.settlement.conftest import START_MS, Hub, free_port, hub_config, start_anvil, write_toml
from tests.settlement.test_verify import scb

HOUR_MS = 3600_000


def test_service_starts_before_the_chain_and_keeps_its_jobs_in_the_database(tmp_path: Path) -> None:
    port = free_port()
    config = hub_config(tmp_path, f"http://127.0.0.1:{port}")
    config.data["settlement"].update({"check_interval_s": 0.2, "supply_interval_s": 0.2, "retry_initial_s": 0.2,
                                      "retry_max_s": 0.5})
    service = SettlementService(config)
    import settlement.service as module

    module._service = service
    scheduler = make_scheduler(service)
    scheduler.start()
    node = None
    try:
        with service.engine.connect() as conn:
            jobs = {row[0] for row in conn.execute(text("SELECT id FROM settlement_scheduler_jobs"))}
        assert jobs == {"settle", "supply"}
        time.sleep(1.0)
        assert service.system is None and service._connect_backoff.failures >= 1  # chain down: backing off
        node = start_anvil(port)
        deadline = time.monotonic() + 30
        while service.system is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.system is not None and service.system.demo
    finally:
        scheduler.shutdown(wait=True)
        module._service = None
        if node is not None:
            node.stop()
    with service.factory() as session:
        assert len(session.scalars(select(SettlementSystem)).all()) == 1
    # a second start re-registers the same two jobs, it does not add more
    scheduler = make_scheduler(service)
    scheduler.start(paused=True)
    try:
        with service.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM settlement_scheduler_jobs")).scalar() == 2
    finally:
        scheduler.shutdown(wait=False)
    service.close()
    service.engine.dispose()


def test_operator_commands(hub: Hub, tmp_path: Path) -> None:
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    with transaction(hub.factory) as session:  # what the running energy manager stores: its clock's anchor
        save_state(session, CLOCK_STATE_KEY, ClockAnchor(hub.clock.value, int(time.time() * 1000), 1.0).as_dict())
    config = write_toml(hub.config, tmp_path / "scb.toml")
    settled = scb("--config", str(config), "settle", "--now")
    assert settled.returncode == 0, settled.stderr
    assert "period 1: settled" in settled.stdout and "period 2: settled" in settled.stdout
    again = scb("--config", str(config), "settle", "--now")
    assert again.returncode == 0 and "nothing to settle" in again.stdout

    with hub.factory() as session:
        reading_id = session.execute(text("SELECT id FROM energy_readings WHERE period = 2 LIMIT 1")).scalar()
    exported = scb("--config", str(config), "proof", "export", str(reading_id))
    assert exported.returncode == 0, exported.stderr
    proof = tmp_path / "proof.json"
    proof.write_text(exported.stdout)
    assert json.loads(exported.stdout)["chain"]["period_id"] == 2
    side_key = Path(hub.config.data["hub"]["data_dir"]) / "secrets" / "mam-readings.sidekey"
    checked = scb("--config", str(config), "verify", "--proof", str(proof), "--side-key-file", str(side_key))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[ok  ] MAM message" in checked.stdout and "verdict: VALID" in checked.stdout

    unsettled = scb("--config", str(config), "proof", "export", "999999")
    assert unsettled.returncode == 2 and "no reading 999999" in unsettled.stderr

    info = scb("--config", str(config), "chain", "info")
    assert info.returncode == 0, info.stderr
    assert "last period 2" in info.stdout and "h3" in info.stdout
    status = scb("--config", str(config), "status", "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["settlement"]["last_period"]["period_id"] == 2


@pytest.mark.parametrize("stoppable", [False, True])
def test_a_scheduler_waking_after_shutdown_submits_nothing(stoppable: bool, caplog: pytest.LogCaptureFixture,
                                                          tmp_path: Path) -> None:
    """The race of a stop: the scheduler's thread wakes after shutdown() closed the executor, with a job due. The
    stock BackgroundScheduler then logs 'Error submitting job' with a traceback (shown here, so the test can fail);
    the settlement's scheduler submits nothing."""
    from datetime import datetime, timezone

    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from settlement.service import stoppable_scheduler_class

    cls = stoppable_scheduler_class() if stoppable else BackgroundScheduler
    # a job store in a database, as the service's: its jobs outlive shutdown(), so a late wake-up finds one due
    store = SQLAlchemyJobStore(url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    scheduler = cls(jobstores={"default": store}, timezone=timezone.utc)
    scheduler.start(paused=True)  # the thread processes nothing; the test plays its late wake-up itself
    scheduler.add_job(print, "interval", seconds=3600, next_run_time=datetime.now(timezone.utc))
    scheduler.shutdown(wait=True)
    with caplog.at_level("ERROR", logger="apscheduler"):
        scheduler._process_jobs()
    submitted = [r for r in caplog.records if "Error submitting job" in r.getMessage()]
    assert bool(submitted) is not stoppable



def test_the_scheduler_survives_a_locked_job_store(tmp_path: Path) -> None:
    """Another connection takes the database between the scheduler's read of its due jobs and its write of their
    next run, and holds it for longer than the busy timeout: that write fails "database is locked". The
    scheduler's thread must go on (the stock scheduler's thread dies of it, silently, while the process looks
    alive: the chaos test saw settlement stop beating), and the jobs must run again once the lock is gone."""
    import sqlite3
    import threading

    from sqlalchemy import event

    port = free_port()  # nothing listens: the jobs back off on the chain, which is not what this test is about
    config = hub_config(tmp_path, f"http://127.0.0.1:{port}", database__busy_timeout_s=0.2)
    config.data["settlement"].update({"check_interval_s": 0.3, "supply_interval_s": 0.3, "retry_initial_s": 0.2,
                                      "retry_max_s": 0.5})
    service = SettlementService(config)
    database = Path(config.data["hub"]["data_dir"]) / "scb.sqlite3"
    holder = sqlite3.connect(database, isolation_level=None,
                             check_same_thread=False)  # locked from the scheduler's thread, freed by a timer
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)  # a WAL reader: never waits for the holder
    locked = threading.Event()
    due_read = threading.local()

    def after_execute(_conn, _cursor, statement: str, *_args: object) -> None:
        if "FROM settlement_scheduler_jobs" in statement and "next_run_time <=" in statement:
            due_read.seen = True  # APScheduler's get_due_jobs: the next transaction of this thread writes them

    def on_checkout(*_args: object) -> None:  # the pool hands out a connection: no transaction is open yet
        if getattr(due_read, "seen", False) and not locked.is_set():
            holder.execute("BEGIN EXCLUSIVE")  # the scheduler's read has committed: this cannot wait
            locked.set()
            threading.Timer(1.0, holder.execute, ("COMMIT",)).start()
        due_read.seen = False

    event.listen(service.engine, "after_cursor_execute", after_execute)
    event.listen(service.engine, "checkout", on_checkout)
    import settlement.service as module

    module._service = service
    scheduler = make_scheduler(service)
    scheduler.start()
    try:
        assert locked.wait(10), "the scheduler never read its due jobs"
        released = time.time() + 1.0
        deadline = time.monotonic() + 15
        rescheduled = False
        while time.monotonic() < deadline and not rescheduled:
            time.sleep(0.1)
            next_runs = [row[0] for row in reader.execute("SELECT next_run_time FROM settlement_scheduler_jobs")]
            rescheduled = all(t > released + 0.3 for t in next_runs)  # both ran, and were rescheduled, after it
        assert any(t.name == "APScheduler" for t in threading.enumerate()), "the scheduler's thread died"
        assert rescheduled, "the jobs did not run again after the lock was released"
    finally:
        scheduler.shutdown(wait=True)
        module._service = None
        service.close()
        service.engine.dispose()
        holder.close()
        reader.close()


def test_an_unexpected_error_of_the_job_store_goes_to_on_fatal() -> None:
    """Not a database error (here a job store that breaks): the scheduler ends the process (on_fatal: exit 70),
    it does not retry what it does not understand, nor go on without its thread."""
    import threading
    from datetime import datetime, timezone

    from apscheduler.jobstores.memory import MemoryJobStore

    from settlement.service import stoppable_scheduler_class

    class BrokenStore(MemoryJobStore):  # type: ignore[misc]
        def update_job(self, job: object) -> None:
            raise ValueError("the store is broken")

    fatal: list[tuple[str, BaseException]] = []
    called = threading.Event()

    def on_fatal(name: str, exc: BaseException) -> None:
        fatal.append((name, exc))
        called.set()

    scheduler = stoppable_scheduler_class(on_fatal)(jobstores={"default": BrokenStore()}, timezone=timezone.utc)
    scheduler.add_job(print, "interval", seconds=3600, next_run_time=datetime.now(timezone.utc))
    scheduler.start()
    try:
        assert called.wait(10)
    finally:
        scheduler.shutdown(wait=False)
    assert [(name, str(exc)) for name, exc in fatal] == [("scheduler", "the store is broken")]
