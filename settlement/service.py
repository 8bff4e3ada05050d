"""`scb settlement`: the scheduled jobs of the hub's money side, run by APScheduler 3.x.

Two interval jobs, kept in the project database (APScheduler's SQLAlchemy job store, table
`settlement_scheduler_jobs`, created by the migrations), run one at a time on a single worker thread so that they
never race for the hub account's nonce:
- `settle` every `check_interval_s`: settle every closed period of the system (settlement.job);
- `supply` every `supply_interval_s`: read standing, store and apply supply decisions (settlement.supply).
The process starts even when the chain is not up yet (anvil may start after it): the first job that reaches the
chain resolves the system (bootstrapping the demo on a development chain) and re-applies the last supply
decisions; until then each run backs off. SIGTERM/SIGINT let the running job finish, then stop the scheduler.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone
from types import FrameType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from energy_manager.settings import EnergySettings, load_energy_settings
from settlement.chain import ChainClient, connect
from settlement.clock import ChainClock, CommunityTime
from scb.retry import Backoff
from settlement.job import RunReport, Settler
from settlement.models import SCHEDULER_TABLE
from settlement.settings import EthereumSettings, SettlementSettings, ethereum_settings, settlement_settings
from settlement.supply import SupplyWatcher, make_actuator
from settlement.system import SystemRef, resolve_system
from scb.config import Config
from scb.db import init_db, make_sessionmaker
from scb.errors import ChainRefused, ChainUnavailable, DataError, ScbError

log = logging.getLogger("settlement")

SETTLE_JOB = "settlement.service:settle_job"
SUPPLY_JOB = "settlement.service:supply_job"


class SettlementService:
    """Everything the two jobs share: settings, database, chain client, the resolved system."""

    def __init__(self, config: Config, engine: Engine | None = None, clock: object | None = None) -> None:
        self.config = config
        self.eth: EthereumSettings = ethereum_settings(config)
        self.settings: SettlementSettings = settlement_settings(config)
        self.energy: EnergySettings = load_energy_settings(config)
        self.engine = engine or init_db(config)
        self.factory = make_sessionmaker(self.engine)
        self.clock = clock or CommunityTime(self.energy, self.factory)
        self.client: ChainClient | None = None
        self.system: SystemRef | None = None
        self.settler: Settler | None = None
        self.watcher: SupplyWatcher | None = None
        self.actuator = make_actuator(self.settings.actuator, self.settings.relay_port, self.settings.relay_baud)
        self._connect_backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        self.lock = threading.Lock()

    def ready(self) -> bool:
        """Connect and resolve the system once; False (after logging why) while the chain is unreachable."""
        if self.settler is not None:
            return True
        if not self._connect_backoff.due(time.time()):
            return False
        try:
            client = connect(self.eth)
            system = resolve_system(self.config, self.factory, client, self.eth, self.settings, self.energy)
            chain_clock = ChainClock.for_setting(client, self.eth.time_sync, getattr(self.clock, "real_time", False))
        except ChainUnavailable as exc:
            delay = self._connect_backoff.fail(time.time(), str(exc))
            log.warning("%s; trying again in %.0f s", exc, delay)
            return False
        except ScbError as exc:  # configuration or data: logged without a traceback; fix and restart
            delay = self._connect_backoff.fail(time.time(), str(exc))
            log.error("cannot start settling: %s (trying again in %.0f s)", exc, delay)
            return False
        self.client, self.system = client, system
        self.settler = Settler(self.factory, client, system, hub_id=self.energy.hub_id,
                               period_s=self.settings.period_s, lateness_s=self.settings.lateness_s,
                               clock=self.clock, chain_clock=chain_clock,  # type: ignore[arg-type]
                               retry_initial_s=self.settings.retry_initial_s, retry_max_s=self.settings.retry_max_s)
        self.watcher = SupplyWatcher(self.factory, client, system, self.actuator, self.clock,  # type: ignore[arg-type]
                                     chain_clock)
        log.info("settling system %d on %s (chain %d) as %s; periods of %d s, lateness %d s, clock sync %s",
                 system.system_id, system.contract, system.chain_id, client.sender, self.settings.period_s,
                 self.settings.lateness_s, "on" if chain_clock.enabled else "off")
        try:
            self.watcher.reapply()
        except ScbError as exc:
            log.warning("could not re-apply the last supply decisions: %s", exc)
        return True

    def settle(self, force: bool = False) -> RunReport | None:
        with self.lock:
            if not self.ready():
                return None
            assert self.settler is not None
            return self.settler.run(force=force)

    def supply(self) -> None:
        with self.lock:
            if not self.ready():
                return
            assert self.watcher is not None
            try:
                self.watcher.run()
            except (ChainUnavailable, ChainRefused, DataError, SQLAlchemyError) as exc:
                log.warning("supply check: %s", str(exc).splitlines()[0])

    def close(self) -> None:
        self.actuator.close()


_service: SettlementService | None = None


def settle_job() -> None:
    """APScheduler entry point (referenced by name in the job store)."""
    if _service is not None:
        _service.settle()


def supply_job() -> None:
    """APScheduler entry point (referenced by name in the job store)."""
    if _service is not None:
        _service.supply()


def make_scheduler(service: SettlementService):  # type: ignore[no-untyped-def]
    """A BackgroundScheduler with the database job store and one worker thread, jobs (re)registered."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=service.engine, tablename=SCHEDULER_TABLE)},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=timezone.utc,
    )
    now = datetime.now(timezone.utc)
    scheduler.add_job(SETTLE_JOB, "interval", seconds=service.settings.check_interval_s, id="settle",
                      name="settle closed periods", replace_existing=True, next_run_time=now)
    scheduler.add_job(SUPPLY_JOB, "interval", seconds=service.settings.supply_interval_s, id="supply",
                      name="supply decisions", replace_existing=True, next_run_time=now)
    return scheduler


def run(config: Config, stop: threading.Event | None = None, install_signals: bool = True) -> int:
    """Run the jobs until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    global _service
    stop = stop or threading.Event()
    service = SettlementService(config)
    _service = service
    previous: dict[int, object] = {}
    if install_signals:
        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    scheduler = make_scheduler(service)
    scheduler.start()
    log.info("settlement service started: checks every %g s, supply decisions every %g s",
             service.settings.check_interval_s, service.settings.supply_interval_s)
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        service.close()
        service.engine.dispose()
        _service = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
    log.info("settlement service stopped")
    return 0
