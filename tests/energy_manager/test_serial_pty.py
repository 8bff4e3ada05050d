"""The serial driver through a real pseudo-terminal pair: the test writes the master end, the driver (pyserial)
reads the slave end by path - no mocks. The path is a symlink, as udev's /dev/serial/by-id links are, so a
meter that is unplugged and plugged back in can be played by closing one pty and pointing the link at a new one.
"""
from __future__ import annotations

import os
import random
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from energy_manager.drivers.serial_line import SerialDevice
from energy_manager.models import InputCounter, StoredReading
from energy_manager.monitor import EnergyMonitor
from energy_manager.settings import load_energy_settings
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade

pytestmark = pytest.mark.timeout(60)


class Pty:
    """A pty pair with the slave reachable through a symlink."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing before the driver configures the port
        tmp = link.with_name(link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, link)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)


def wait_for(condition: Callable[[], object], feed: Callable[[], None] | None = None, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if feed is not None:
            feed()
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture()
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyEMON"


def device_for(link: Path) -> SerialDevice:
    return SerialDevice("emon", str(link), 115200, read_timeout_s=0.05, retry_min_s=0.05, retry_max_s=0.2)


def test_frames_and_bad_lines_through_a_pty(link: Path) -> None:
    pty = Pty(link)
    device = device_for(link)
    device.open()
    try:
        wait_for(device.connected.is_set)
        # like an emonTx, send a frame every so often until the driver has one (its first line is dropped)
        sample = wait_for(lambda: device.read(0), lambda: pty.write(b"MSG:1,Vrms:230.1,P1:420,E1:1000\r\n"))
        assert sample.values == {"MSG": 1.0, "Vrms": 230.1, "P1": 420.0, "E1": 1000.0}
        assert sample.raw == b"MSG:1,Vrms:230.1,P1:420,E1:1000\r\n"
        time.sleep(0.2)  # let the frames still in flight arrive, then forget them
        device.read(0)
        device.take_events()
        pty.write(b"MSG:2,P1:4x0,E1:1001\r\n" b"MSG:3,P1,E1:1002\r\n" b"MSG:4,P1:\xfe\xff,E1:1\r\n"
                  + b"9" * 700 + b"\r\n" b"MSG:5,P1:430,E1:1003\r\n")
        sample = wait_for(lambda: device.read(0))
        assert sample.values["E1"] == 1003.0
        kinds = [e.kind for e in wait_for(lambda: device.events._items and device.take_events())]
        time.sleep(0.2)
        kinds += [e.kind for e in device.take_events()]
        assert kinds == ["non_numeric", "malformed", "not_ascii", "too_long"]
        assert device.read(0) is None  # nothing new since
    finally:
        device.close()
        pty.unplug()


def test_a_meter_that_disappears_is_retried_until_it_returns(link: Path) -> None:
    pty = Pty(link)
    device = device_for(link)
    device.open()
    try:
        wait_for(device.connected.is_set)
        wait_for(lambda: device.read(0), lambda: pty.write(b"E1:1\r\n"))
        pty.unplug()  # USB cable pulled
        link.unlink()
        wait_for(lambda: not device.connected.is_set())
        time.sleep(0.5)  # several failed reopen attempts meanwhile
        assert device.read(0) is None
        pty = Pty(link)  # plugged back in (a new tty, same by-id link)
        wait_for(device.connected.is_set)
        sample = wait_for(lambda: device.read(0), lambda: pty.write(b"E1:2\r\n"))
        assert sample.values == {"E1": 2.0}
        kinds = [e.kind for e in device.take_events()]
        assert kinds[0] == "unavailable" and kinds.count("unavailable") == 1  # logged once per outage
        assert kinds[-1] == "reconnected"
        assert device.opens >= 2
    finally:
        device.close()
        pty.unplug()


def test_sampling_loop_over_a_pty_with_a_stream_of_noise(link: Path, tmp_path: Path) -> None:
    """Frames mixed with 2,000 mutated or random lines: every good frame that is sampled is stored, every bad line
    counted, and nothing escapes the loop."""
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    settings = load_energy_settings(Config(data={"energy": {
        "clock_speed": 1, "publish_window_s": 60,
        "devices": {"emon": {"driver": "serial", "port": str(link)}},
        "meters": {"h1": {"device": "emon", "circuit": "consumption", "party": "h1", "register": "E1",
                          "power": "P1"}},
    }}))
    pty = Pty(link)
    device = device_for(link)
    device.open()
    rng = random.Random(7)
    energy = 5_000
    try:
        wait_for(device.connected.is_set)
        mon = EnergyMonitor(settings, factory, {"emon": device})
        wait_for(lambda: device._latest is not None, lambda: pty.write(b"E1:5000,P1:1\r\n"))
        bad_lines = 0
        stored = 0
        for round_ in range(40):
            for _ in range(50):
                line = bytearray(f"MSG:{round_},P1:{rng.randint(0, 3000)},E1:{energy}".encode())
                for _ in range(rng.randint(1, 3)):
                    i = rng.randrange(len(line))
                    line[i:i + 1] = bytes([rng.randrange(256)]) if rng.random() < 0.5 else b""
                line = bytes(line).replace(b"\n", b"")
                pty.write(line + b"\r\n")
                bad_lines += 1
            energy += rng.randint(0, 5)
            pty.write(f"MSG:{round_},P1:120,E1:{energy}\r\n".encode())
            time.sleep(0.03)
            report = mon.tick(int(time.time() * 1000))
            assert report.committed
            stored += len(report.readings)
        assert bad_lines == 2_000
        with factory() as s:
            seqs = list(s.execute(select(StoredReading.seq).order_by(StoredReading.seq)).scalars())
            counted = sum(s.execute(select(InputCounter.count)).scalars())
            flags = set(s.execute(select(StoredReading.flags)).scalars())
        assert seqs == list(range(1, stored + 1)) and stored >= 10
        assert counted >= 100  # many mutated lines are rejected (others still parse, e.g. a changed digit)
        assert flags <= {"first", "", "spike,rebase", "reset", "reset,rebase"}
    finally:
        device.close()
        pty.unplug()
        engine.dispose()
