"""`scb energy-manager`: the sampling process.

Start-up: validate the configuration, take the data directory's energy-manager lock (two samplers would number
readings twice), migrate the database, set up the community clock, restore device checkpoints, open devices.
Then one `EnergyMonitor.tick` per sample interval, aligned to whole intervals of community time, until SIGTERM
or SIGINT: the signal only sets a flag, so the sample in progress is finished and committed before exiting.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from energy_manager.clock import ClockAnchor, CommunityClock, JumpDetector, resume_point
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

log = logging.getLogger("energy_manager")

LOCK_FILE = "energy-manager.lock"


def build_device(device: DeviceSettings, settings: EnergySettings, start_ms: int) -> Device:
    """The driver registry: a new driver (Modbus) is one more branch here and one Device class."""
    if device.driver == "simulated":
        return SimulatedDevice(device.name, settings.community, start_ms)
    if device.driver == "serial":
        o = device.options
        return SerialDevice(device.name, o["port"], o["baud"], read_timeout_s=o["read_timeout_s"],
                            retry_max_s=o["retry_max_s"])
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


def run(config: Config, *, max_samples: int | None = None, stop: threading.Event | None = None,
        install_signals: bool = True) -> int:
    """Run the sampling loop until stopped; returns the process exit code (0 after a clean stop)."""
    settings = load_energy_settings(config)
    stop = stop or threading.Event()
    with exclusive_lock(config.data_dir / LOCK_FILE, "energy manager"):
        engine = init_db(config)
        devices: dict[str, Device] = {}
        previous_handlers: dict[int, object] = {}
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
            samples = _loop(monitor, clock, settings, stop, max_samples)
            log.info("energy manager stopped after %d sample%s", samples, "" if samples == 1 else "s")
        finally:
            for device in devices.values():
                device.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            engine.dispose()
    return 0


def _loop(monitor: EnergyMonitor, clock: CommunityClock, settings: EnergySettings, stop: threading.Event,
          max_samples: int | None) -> int:
    interval = settings.sample_interval_ms
    samples = 0
    jumps = JumpDetector()
    while not stop.is_set():
        now = clock.now_ms()
        extra: list[tuple[str, InputEvent]] = []
        state: dict[str, dict] = {}
        if clock.real_time:
            jump = jumps.check()
            if jump is not None:
                detail = f"the wall clock moved {jump:+.1f} s against the time that passed"
                log.warning("clock jump: %s", detail)
                extra.append(("clock", InputEvent(CLOCK_JUMP, detail)))
        else:
            # keep the stored anchor current: settlement derives community time from it
            state[CLOCK_STATE_KEY] = clock.anchor().as_dict()
        try:
            monitor.tick(now, extra, state)
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one sample (a bug is logged, not fatal)
            log.error("sample at %d failed: %s: %s", now, type(exc).__name__, exc)
            log.debug("sample failure", exc_info=True)
            monitor.load_cursors_safely()
        samples += 1
        if max_samples is not None and samples >= max_samples:
            break
        due = (now // interval + 1) * interval
        stop.wait(clock.seconds_until(due))
    return samples


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
