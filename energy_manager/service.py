"""`scb energy-manager`: the sampling process.

Start-up: validate the configuration, take the data directory's energy-manager lock (two samplers would number
readings twice), migrate the database, set up the community clock, restore device checkpoints, open devices.
Then the "sampling" loop under `scb.loop.Guard` (the failure policy): a sample per sample interval, aligned to
whole intervals of community time, each stored in one transaction, until SIGTERM or SIGINT: the signal only sets
a flag, so the sample in progress is finished and committed before exiting.

A database that cannot take a sample (locked beyond the busy timeout, disk full) is retried in place with
backoff, never longer than one sample interval between tries, and shown in the heartbeat; the samples taken
meanwhile wait in memory and are stored, in order and once, when it is back (energy_manager.monitor). Anything
unexpected ends the process with exit code 70, so that its supervisor restarts it from the database.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from energy_manager.clock import ClockAnchor, CommunityClock, JumpDetector, resume_point
from energy_manager.drivers import mqtt
from energy_manager.drivers.base import Device, InputEvent
from energy_manager.drivers.serial_line import SerialDevice
from energy_manager.drivers.simulated import SimulatedDevice
from energy_manager.monitor import CLOCK_JUMP, EnergyMonitor, load_state, save_state
from energy_manager.settings import DeviceSettings, EnergySettings, load_energy_settings
from scb.community_clock import CLOCK_STATE_KEY  # the anchor other processes read (shared plumbing)
from scb.config import Config
from scb.db import init_db, make_sessionmaker, transaction
from scb.errors import ConfigError
from scb.files import exclusive_lock
from scb.loop import (EXIT_LOOP_FAILED, RETRY_INITIAL_S, RETRY_MAX_S, Guard, Heartbeat,
                      default_on_fatal, describe, is_transient)
from scb.retry import Backoff, jittered

log = logging.getLogger("energy_manager")

LOCK_FILE = "energy-manager.lock"
#: The process name (its `scb` subcommand) in heartbeats, and the name of its one loop.
PROCESS = "energy-manager"
LOOP = "sampling"


def build_device(device: DeviceSettings, settings: EnergySettings, start_ms: int) -> Device:
    """The driver registry: a new driver (Modbus) is one more branch here and one Device class."""
    if device.driver == "simulated":
        return SimulatedDevice(device.name, settings.community, start_ms)
    if device.driver == "serial":
        o = device.options
        return SerialDevice(device.name, o["port"], o["baud"], read_timeout_s=o["read_timeout_s"],
                            retry_max_s=o["retry_max_s"])
    if device.driver == "mqtt":
        return mqtt.build(device.name, device.options, settings.sample_interval_ms)
    if device.driver == "modbus":  # pymodbus imported only for a Modbus meter (issue 16: ~10 MB a process)
        from energy_manager.drivers import modbus as modbus_driver

        return modbus_driver.build(device.name, device.options)
    raise ConfigError(f"energy.devices.{device.name}.driver {device.driver!r} is not available")


def _start_clock(settings: EnergySettings, monitor_newest_ts: int | None,
                 factory: sessionmaker[Session]) -> CommunityClock:
    """Real time for real meters; otherwise continue the accelerated clock from its stored anchor."""
    if settings.clock_speed == 1 and settings.start_ms is None:
        return CommunityClock(1.0)
    with transaction(factory) as session:
        stored = load_state(session, CLOCK_STATE_KEY)
        previous = ClockAnchor.from_dict(stored) if stored else None
        not_before = (monitor_newest_ts + 1) if monitor_newest_ts is not None else 0
        start = resume_point(previous, int(time.time() * 1000), settings.start_ms, not_before)
        clock = CommunityClock(settings.clock_speed, start)
        save_state(session, CLOCK_STATE_KEY, clock.anchor().as_dict())
    return clock


def sampling_backoff(settings: EnergySettings) -> Backoff:
    """The retry delays while the database fails: the policy's, but never longer than one sample interval (real
    seconds). Why: each retry also takes the sample that has come due, so a longer wait would skip samples."""
    cap = min(RETRY_MAX_S, settings.sample_interval_ms / 1000 / settings.clock_speed)
    return jittered(min(RETRY_INITIAL_S, cap), cap)


class Sampler:
    """The step of the "sampling" loop: take the sample that is due, then store what is pending.

    A database error from `store()` propagates to the Guard (backoff, heartbeat); the sample stays pending in
    the monitor and the next step stores it, with the sample that came due meanwhile. The heartbeat's detail
    `pending_samples` says how many samples are waiting for the database (0 while it takes every sample)."""

    def __init__(self, monitor: EnergyMonitor, clock: CommunityClock, settings: EnergySettings,
                 heartbeat: Heartbeat, stop: threading.Event, max_samples: int | None = None) -> None:
        self.monitor = monitor
        self.clock = clock
        self.interval_ms = settings.sample_interval_ms
        self.heartbeat = heartbeat
        self.stop = stop
        self.max_samples = max_samples
        self.samples = 0  # samples taken (stored, pending, or not kept)
        self.due_ms: int | None = None  # community time of the next sample; None: at once
        self.jumps = JumpDetector()
        self._shown_pending = 0
        heartbeat.beat(LOOP, detail={"pending_samples": 0})

    def step(self) -> float:
        now = self.clock.now_ms()
        if (self.due_ms is None or now >= self.due_ms) and not self._enough():
            self._sample(now)
            self.due_ms = (now // self.interval_ms + 1) * self.interval_ms
        if self.monitor.pending_samples:
            try:
                self.monitor.store()
            except BaseException:
                self._show_pending(self.monitor.pending_samples)
                raise
            self._show_pending(0)
        if self._enough():
            self.stop.set()
            return 0.0
        assert self.due_ms is not None
        return self.clock.seconds_until(self.due_ms)

    def _show_pending(self, pending: int) -> None:
        # only on a change: a heartbeat write per sample would wear an SD card for nothing
        if pending != self._shown_pending:
            self._shown_pending = pending
            self.heartbeat.beat(LOOP, detail={"pending_samples": pending})

    def _enough(self) -> bool:
        return self.max_samples is not None and self.samples >= self.max_samples

    def _sample(self, now: int) -> None:
        extra: list[tuple[str, InputEvent]] = []
        state: dict[str, dict] = {}
        if self.clock.real_time:
            jump = self.jumps.check()
            if jump is not None:
                detail = f"the wall clock moved {jump:+.1f} s against the time that passed"
                log.warning("clock jump: %s", detail)
                extra.append(("clock", InputEvent(CLOCK_JUMP, detail)))
        else:
            # keep the stored anchor current: settlement derives community time from it
            state[CLOCK_STATE_KEY] = self.clock.anchor().as_dict()
        self.monitor.sample(now, extra, state)
        self.samples += 1


def run(config: Config, *, max_samples: int | None = None, stop: threading.Event | None = None,
        install_signals: bool = True, on_fatal: Callable[[str, BaseException], None] = default_on_fatal,
        backoff: Backoff | None = None) -> int:
    """Run the sampling loop until stopped; returns the process exit code (0 after a clean stop).

    `on_fatal` (default: exit the process with 70) and `backoff` are for tests."""
    settings = load_energy_settings(config)
    stop = stop or threading.Event()
    heartbeat = Heartbeat(config.data_dir, PROCESS)
    with exclusive_lock(config.data_dir / LOCK_FILE, "energy manager"):
        devices: dict[str, Device] = {}
        previous_handlers: dict[int, object] = {}
        engine = init_db(config)  # locked or failing at start: the `scb` command says so in one line (hub.cli)
        try:
            factory = make_sessionmaker(engine)
            monitor = EnergyMonitor(settings, factory, devices)
            clock = _start_clock(settings, monitor.newest_ts_ms(), factory)
            with factory() as session:
                for name, device_settings in settings.devices.items():
                    device = build_device(device_settings, settings, clock.now_ms())
                    state = load_state(session, f"device:{name}")
                    if state is not None:
                        device.restore(state)
                    devices[name] = device
            for device in devices.values():
                device.open()
            if install_signals:
                previous_handlers = _install_signal_handlers(stop)
            _announce(settings, clock)
            sampler = Sampler(monitor, clock, settings, heartbeat, stop, max_samples)
            fatal: list[BaseException] = []

            def fatal_error(name: str, exc: BaseException) -> None:
                fatal.append(exc)
                on_fatal(name, exc)

            guard = Guard(LOOP, heartbeat, settings.sample_interval_ms / 1000 / settings.clock_speed,
                          on_fatal=fatal_error, backoff=backoff or sampling_backoff(settings))
            guard.run(sampler.step, stop)
            if fatal:
                return EXIT_LOOP_FAILED
            _store_last(monitor)
            log.info("energy manager stopped after %d sample%s", sampler.samples, "" if sampler.samples == 1 else "s")
        finally:
            for device in devices.values():
                device.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            engine.dispose()
    return 0


def _store_last(monitor: EnergyMonitor) -> None:
    """On a stop, one more try for samples the database has not taken yet (they are lost when the process ends)."""
    pending = monitor.pending_samples
    if not pending:
        return
    try:
        monitor.store()
        log.info("stored the %d sample%s that waited for the database", pending, "" if pending == 1 else "s")
    except Exception as exc:  # noqa: BLE001 - the process is stopping; say what is lost, then stop
        if not is_transient(exc):
            raise
        log.error("stopping with %d sample%s the database did not take (%s); the next reading of each meter "
                  "carries their energy", pending, "" if pending == 1 else "s", describe(exc))


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("%s received: finishing the current sample, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _announce(settings: EnergySettings, clock: CommunityClock) -> None:
    devices = ", ".join(f"{d.name} ({d.driver}{': ' + d.options['port'] if d.driver == 'serial' else ''})"
                        for d in settings.devices.values())
    meters = ", ".join(f"{m.id}={m.circuit}:{m.party}" for m in settings.meters.values())
    speed = "real time" if clock.real_time else f"community clock x{settings.clock_speed:g}"
    log.info("energy manager for hub %s: devices %s; meters %s", settings.hub_id, devices, meters)
    log.info("sampling every %g s, publishing %g s windows to channel %r (%s)",
             settings.sample_interval_ms / 1000, settings.publish_window_ms / 1000, settings.channel, speed)
