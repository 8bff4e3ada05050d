"""`scb settlement`: the scheduled jobs of the hub's money side, run by APScheduler 3.x.

Two interval jobs, kept in the project database (APScheduler's SQLAlchemy job store, table
`settlement_scheduler_jobs`, created by the migrations), run one at a time on a single worker thread so that they
never race for the hub account's nonce:
- `settle` every `check_interval_s`: settle every closed period of the system (settlement.job);
- `supply` every `supply_interval_s`: read standing, store and apply supply decisions (settlement.supply).
A third job, `heartbeat`, beats the process's heartbeat every 10 s on the same worker thread (in memory, not in
the job store: it would rewrite its row every 10 s), so the beat shows the worker is alive while both jobs idle
and stops when a job hangs.

The failure policy is scb.loop's, applied to each run of a job by `scb.loop.Guard.run_once` (heartbeat process
"settlement", loops "settle" and "supply"): expected trouble the job handles itself (the chain unreachable or
refusing, a period conflict: settlement.job) is shown in the heartbeat while it lasts; a database error backs the
job off in memory; anything unexpected ends the process with exit code 70 so that its supervisor restarts it. A
`ConfigError` (the node serves another chain, the hub lacks the hub role, the holder map misses a holder...) ends
the process with its one-line message and exit code 2: fix the configuration, restart.

The process starts even when the chain is not up yet (anvil may start after it): the first job that reaches the
chain resolves the system (bootstrapping the demo on a development chain), records the hub account's balance
(settlement.health) and re-applies the last supply decisions; until then each run backs off. A contract that
vanished (a reset development chain) makes the next run resolve the system again. SIGTERM/SIGINT let the running
job finish, then stop the scheduler.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from energy_manager.settings import EnergySettings, load_energy_settings
from settlement.chain import ChainClient, NoContract, connect
from settlement.clock import ChainClock, CommunityTime
from settlement.health import last_settle_gas, record_hub_account
from settlement.job import RunReport, Settler
from settlement.logscan import DeploymentStore
from settlement.models import SCHEDULER_TABLE
from settlement.settings import EthereumSettings, SettlementSettings, ethereum_settings, settlement_settings
from settlement.supply import SupplyWatcher, make_actuator
from settlement.system import SystemRef, resolve_system
from scb.config import Config
from scb.db import init_db, make_sessionmaker
from scb.errors import ChainRefused, ConfigError, TransportError
from scb.loop import IDLE_BEAT_S, Guard, Heartbeat, Waiting, default_on_fatal, describe, fail_by_policy
from scb.retry import Backoff, jittered

log = logging.getLogger("settlement")

PROCESS = "settlement"
SETTLE, SUPPLY = "settle", "supply"
SETTLE_JOB = "settlement.service:settle_job"
SUPPLY_JOB = "settlement.service:supply_job"


class SettlementService:
    """Everything the jobs share: settings, database, chain client, the resolved system, the heartbeat.

    `heartbeat`, `on_fatal` and `provider` (a web3 provider instead of an HTTP connection to `rpc_url`) are for
    tests; by default the process's heartbeat, exit 70 on an unexpected error, and the configured node.
    """

    def __init__(self, config: Config, engine: Engine | None = None, clock: object | None = None, *,
                 heartbeat: Heartbeat | None = None,
                 on_fatal: Callable[[str, BaseException], None] = default_on_fatal,
                 provider: Any | None = None) -> None:
        self.config = config
        self.eth: EthereumSettings = ethereum_settings(config)
        self.settings: SettlementSettings = settlement_settings(config)
        self.energy: EnergySettings = load_energy_settings(config)
        self.engine = engine or init_db(config)
        self.factory = make_sessionmaker(self.engine)
        self.clock = clock or CommunityTime(self.energy, self.factory)
        self.provider = provider
        self.client: ChainClient | None = None
        self.system: SystemRef | None = None
        self.settler: Settler | None = None
        self.watcher: SupplyWatcher | None = None
        self.actuator = make_actuator(self.settings.actuator, self.settings.relay_port, self.settings.relay_baud)
        self._connect_backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        self.lock = threading.Lock()
        self.heartbeat = heartbeat or Heartbeat(config.data_dir, PROCESS)
        self.on_fatal = on_fatal
        self.guards = {SETTLE: Guard(SETTLE, self.heartbeat, self.settings.check_interval_s, on_fatal),
                       SUPPLY: Guard(SUPPLY, self.heartbeat, self.settings.supply_interval_s, on_fatal)}
        #: the ConfigError that ends the process (raised by `run` in the main thread), or None
        self.failed: ConfigError | None = None
        #: set to end `run` (the process) early, after a ConfigError
        self.stop: threading.Event | None = None

    # -- the chain and the system -------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Connect and resolve the system once; False (after logging why) while the chain is unreachable or
        refuses. A ConfigError propagates: it ends the process (see the module docstring)."""
        if self.settler is not None:
            return True
        if not self._connect_backoff.due(time.time()):
            return False
        try:
            client = connect(self.eth, provider=self.provider)
            # deployment blocks (the floor of every log scan) are found once and kept in the hub's database
            client.deployment_store = DeploymentStore(self.factory)
            system = resolve_system(self.config, self.factory, client, self.eth, self.settings, self.energy)
            chain_clock = ChainClock.for_setting(client, self.eth.time_sync)
        except TransportError as exc:
            delay = self._connect_backoff.fail(time.time(), str(exc))
            log.warning("%s; trying again in %.0f s", exc, delay)
            return False
        except ChainRefused as exc:  # e.g. registering the demo system reverted: not soon again
            self._connect_backoff.fail(time.time(), str(exc))
            delay = self._connect_backoff.maximum
            self._connect_backoff.not_before = time.time() + delay
            log.error("cannot start settling: %s (trying again in %.0f s)", exc, delay)
            return False
        self.client, self.system = client, system
        self._connect_backoff.succeed()
        self.settler = Settler(self.factory, client, system, hub_id=self.energy.hub_id,
                               period_s=self.settings.period_s, lateness_s=self.settings.lateness_s,
                               clock=self.clock, chain_clock=chain_clock,  # type: ignore[arg-type]
                               retry_initial_s=self.settings.retry_initial_s, retry_max_s=self.settings.retry_max_s)
        self.watcher = SupplyWatcher(self.factory, client, system, self.actuator, self.clock,  # type: ignore[arg-type]
                                     chain_clock)
        log.info("settling system %d on %s (chain %d) as %s; periods of %d s, lateness %d s, clock sync %s",
                 system.system_id, system.contract, system.chain_id, client.sender, self.settings.period_s,
                 self.settings.lateness_s, "on" if chain_clock.enabled else "off")
        self._record_hub_account(None)
        self.watcher.reapply()  # actuator failures are stored and retried by the next supply check
        return True

    def _forget_system(self, exc: NoContract) -> None:
        """The contract is gone (a reset development chain): resolve the system again at the next run."""
        log.warning("%s: resolving the system again", exc)
        self.client = self.system = self.settler = self.watcher = None

    def _record_hub_account(self, settle_gas: int | None) -> None:
        """The hub account's balance and the gas of a settlement, for the low-balance alert (settlement.health).
        Informative: a chain that fails here is met again by the next job, so it is only logged."""
        assert self.client is not None and self.system is not None
        try:
            if settle_gas is None:
                settle_gas = last_settle_gas(self.factory, self.client, self.system.ref)
            record_hub_account(self.factory, self.client, holders=len(self.system.holders), settle_gas=settle_gas)
        except (TransportError, ChainRefused) as exc:
            log.warning("hub account balance not recorded: %s", describe(exc))

    # -- the jobs' work ---------------------------------------------------------------------------------------
    def settle(self, force: bool = False) -> RunReport | None:
        """Settle what is closed (`force`: even while backing off, and raise what went wrong: `scb settle --now`).
        None while the chain cannot be reached (see `_connect_backoff.last_error`)."""
        with self.lock:
            if not self.ready():
                return None
            assert self.settler is not None
            try:
                report = self.settler.run(force=force)
            except NoContract as exc:
                self._forget_system(exc)
                if force:
                    raise
                return None
            if report.settled:
                self._record_hub_account(self.settler.last_settle_gas)
            return report

    def supply(self) -> int | None:
        """One supply check; returns how many decisions changed, None while the chain cannot be reached."""
        with self.lock:
            if not self.ready():
                return None
            assert self.watcher is not None
            try:
                return len(self.watcher.run())
            except NoContract as exc:
                self._forget_system(exc)
                return None

    def _not_ready(self) -> Waiting:
        return Waiting(f"not connected to the chain yet: {self._connect_backoff.last_error or 'starting'}")

    def settle_step(self) -> Waiting | None:
        """One run of the `settle` job, for its Guard: trouble the settler handled is shown as Waiting."""
        report = self.settle()
        if report is None:
            return self._not_ready()
        assert self.system is not None
        self.heartbeat.beat(SETTLE, detail={"system_id": self.system.system_id, "contract": self.system.contract,
                                            "waiting": report.waiting, "trouble": report.trouble,
                                            "settled": report.settled[-1] if report.settled else None,
                                            # the chain asks more than [ethereum] max_fee_gwei: waiting, not paying
                                            "fee_cap_wait": report.trouble == "fee-cap"})
        return Waiting(report.waiting or report.trouble) if report.trouble else None

    def supply_step(self) -> Waiting | None:
        changed = self.supply()
        if changed is None:
            return self._not_ready()
        self.heartbeat.beat(SUPPLY, detail={"changed": changed})
        return None

    def run_job(self, name: str) -> None:
        """Run job `name` once under the failure policy (what the scheduler calls)."""
        step = {SETTLE: self.settle_step, SUPPLY: self.supply_step}[name]

        def guarded() -> Waiting | None:
            try:
                return step()
            except ConfigError as exc:
                self._config_failed(exc)
                return Waiting(describe(exc))

        self.guards[name].run_once(guarded)

    def _config_failed(self, exc: ConfigError) -> None:
        if self.failed is None:
            log.critical("settlement cannot run with this configuration (fix it and restart): %s", exc)
        self.failed = exc
        if self.stop is not None:
            self.stop.set()

    def beat(self) -> None:
        """The `heartbeat` job: the worker thread is alive while the jobs wait for their next run."""
        for name in (SETTLE, SUPPLY):
            self.heartbeat.beat(name)

    def close(self) -> None:
        self.actuator.close()


_service: SettlementService | None = None


def settle_job() -> None:
    """APScheduler entry point (referenced by name in the job store)."""
    if _service is not None:
        _service.run_job(SETTLE)


def supply_job() -> None:
    """APScheduler entry point (referenced by name in the job store)."""
    if _service is not None:
        _service.run_job(SUPPLY)


#: The scheduler's pass over its job store is retried this soon after a database error, doubling up to the max.
#: Why short: the jobs are due in seconds, and the first retry usually finds the lock gone.
STORE_RETRY_INITIAL_S, STORE_RETRY_MAX_S = 1.0, 60.0


def stoppable_scheduler_class(on_fatal: Callable[[str, BaseException], None] = default_on_fatal) -> type:
    """APScheduler 3's BackgroundScheduler, made safe in two ways.

    * No shutdown race: its thread can wake after `shutdown()` began and submit a due job to the executor
      `shutdown()` has just closed ("cannot schedule new futures after shutdown", logged with a traceback at every
      such stop). The state is checked under the job-store lock, which `shutdown()` holds while it closes the
      executors, so no job is submitted once it has begun.
    * The failure policy for its own pass over the job store: APScheduler catches only a failed read of the due
      jobs; a failed write of a job's next run (the database locked past the busy timeout, or full) ends its
      thread, and then nothing runs any more while the process looks alive. Here a database error is logged and
      the pass tried again after a back-off (a job whose next run was not written is still due then, and runs
      again: settling and the supply check are idempotent); anything else goes to `on_fatal` (exit 70)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import STATE_STOPPED

    class StoppableScheduler(BackgroundScheduler):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._store_backoff = jittered(STORE_RETRY_INITIAL_S, STORE_RETRY_MAX_S)

        def _process_jobs(self):  # type: ignore[no-untyped-def]
            with self._jobstores_lock:  # reentrant: the base method takes it again
                if self.state == STATE_STOPPED:
                    return None
                try:
                    wait = super()._process_jobs()
                except Exception as exc:  # noqa: BLE001 - the policy decides
                    return fail_by_policy("scheduler", exc, self._store_backoff, on_fatal)
                self._store_backoff.succeed()
                return wait

    return StoppableScheduler


def make_scheduler(service: SettlementService):  # type: ignore[no-untyped-def]
    """A BackgroundScheduler with the database job store and one worker thread, jobs (re)registered."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    scheduler = stoppable_scheduler_class(service.on_fatal)(
        # the memory store first: the beat is processed even in a pass whose database store then fails
        jobstores={"memory": MemoryJobStore(),
                   "default": SQLAlchemyJobStore(engine=service.engine, tablename=SCHEDULER_TABLE)},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=timezone.utc,
    )
    now = datetime.now(timezone.utc)
    scheduler.add_job(SETTLE_JOB, "interval", seconds=service.settings.check_interval_s, id="settle",
                      name="settle closed periods", replace_existing=True, next_run_time=now)
    scheduler.add_job(SUPPLY_JOB, "interval", seconds=service.settings.supply_interval_s, id="supply",
                      name="supply decisions", replace_existing=True, next_run_time=now)
    # same executor (the one worker thread) as the jobs: a job that hangs holds the beat back, as it should
    scheduler.add_job(service.beat, "interval", seconds=IDLE_BEAT_S, id="heartbeat", name="heartbeat",
                      jobstore="memory", replace_existing=True, next_run_time=now)
    return scheduler


def run(config: Config, stop: threading.Event | None = None, install_signals: bool = True,
        service: SettlementService | None = None) -> int:
    """Run the jobs until SIGTERM/SIGINT (or `stop`); returns the exit code. A ConfigError met by a job is raised
    here, in the main thread, after the scheduler stopped: the `scb` command prints it as one line and exits 2."""
    global _service
    stop = stop or threading.Event()
    service = service or SettlementService(config)
    service.stop = stop
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
    if service.failed is not None:
        raise service.failed
    log.info("settlement service stopped")
    return 0
