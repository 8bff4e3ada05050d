"""`scb energy-manager` as a real process: kill -9 at random moments and restart, SIGTERM/SIGINT, one instance.

The community clock runs at 3600x (a sample every 60 simulated seconds is one every ~17 ms), so a kill almost
always lands in the middle of a sample. The process logs `committed {...}` (DEBUG) after each commit; every
sequence number it reported committed must be in the database after the restarts.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from energy_manager.message import decode_message
from energy_manager.models import EnergyState, StoredReading
from energy_manager.reading import verify_reading
from energy_manager.registers import RegisterState, energy_delta
from energy_manager.settings import load_energy_settings
from mam_client.crypto.trits import trytes_to_ascii
from mam_client.models import OutboxMessage
from scb.config import load_config
from scb.db import make_engine, make_sessionmaker
from scb.loop import read_heartbeats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
METERS = ("pv", "h1", "h2", "h3", "h4", "grid-import", "grid-export")


class Run:
    """One `scb energy-manager` process with its stderr collected by a thread."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
        env.update({
            "SCB_DATA_DIR": str(data_dir),
            "SCB_ENERGY__CLOCK_SPEED": "3600",
            "SCB_ENERGY__START": "2025-06-21T03:00:00Z",
            "SCB_LOG_LEVEL": "DEBUG",
        })
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "energy-manager", *args], cwd=data_dir,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def committed(self) -> list[dict]:
        return [json.loads(line.split("committed ", 1)[1]) for line in list(self.lines)
                if " energy_manager.monitor: committed " in line]

    def wait_commits(self, n: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.committed()) < n:
            assert self.proc.poll() is None, "\n".join(self.lines[-20:])
            assert time.monotonic() < deadline, "no commit in time:\n" + "\n".join(self.lines[-20:])
            time.sleep(0.02)

    def finish(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def load_rows(data_dir: Path) -> tuple[list[StoredReading], list[OutboxMessage]]:
    engine = make_engine(f"sqlite:///{data_dir / 'scb.sqlite3'}")
    try:
        with make_sessionmaker(engine)() as s:
            readings = list(s.execute(select(StoredReading).order_by(StoredReading.meter, StoredReading.seq)).scalars())
            messages = list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
    finally:
        engine.dispose()
    return readings, messages


def check_store(readings: list[StoredReading], messages: list[OutboxMessage], window_ms: int) -> None:
    """The invariants of a consistent store."""
    by_meter: dict[str, list[StoredReading]] = {}
    for r in readings:
        by_meter.setdefault(r.meter, []).append(r)
    assert sorted(by_meter) == sorted(METERS)
    counts = {m: len(rs) for m, rs in by_meter.items()}
    assert len(set(counts.values())) == 1, f"a sample was stored in part: {counts}"
    settings = load_energy_settings(load_config(environ={}))
    for meter, rs in by_meter.items():
        assert [r.seq for r in rs] == list(range(1, len(rs) + 1)), f"{meter}: sequence numbers not contiguous"
        prev = None
        for r in rs:
            reading = verify_reading(r.canonical, r.digest)
            assert (reading.meter, reading.seq, reading.ts_ms, reading.register_wh) == (meter, r.seq, r.ts_ms,
                                                                                      r.register_wh)
            expected = energy_delta(prev, r.ts_ms, r.register_wh, max_power_w=settings.max_power_w,
                                    gap_after_ms=settings.gap_after_ms)
            assert (r.delta_wh, r.flags) == (expected.delta_wh, expected.flags_text)
            assert set(expected.flags) <= {"first", "gap"}  # the simulator never resets or spikes
            prev = RegisterState(r.ts_ms, r.register_wh)
    # every reading of a closed window is in exactly one message, and each message holds exactly its readings
    last_window = max(r.window_start_ms for r in readings)
    by_digest = {r.digest: r for r in readings}
    seen: set[str] = set()
    for m in messages:
        body = decode_message(trytes_to_ascii(m.message))
        digests = [x.digest().hex() for x in body.readings]
        assert not seen & set(digests), "a reading is in two messages"
        seen |= set(digests)
        assert sorted(digests) == sorted(r.digest for r in readings if r.message_id == m.id)
        assert all(by_digest[d].window_start_ms == body.window_start_ms for d in digests)
    for r in readings:  # closed windows are all published; the newest (still open) one is not yet
        assert (r.message_id is not None) == (r.window_start_ms < last_window)


def test_kill_9_during_sampling_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(1234)
    reported: dict[str, int] = {}
    outputs = []
    for _ in range(5):
        run = Run(tmp_path)
        run.wait_commits(1)
        time.sleep(rng.uniform(0.05, 0.8))
        run.proc.send_signal(signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
        for c in run.committed():
            for meter, seq in c["seq"].items():
                reported[meter] = max(reported.get(meter, 0), seq)
        outputs.append(run.text)
    final = Run(tmp_path)
    final.wait_commits(3)
    final.proc.send_signal(signal.SIGTERM)
    assert final.finish() == 0
    outputs.append(final.text)

    readings, messages = load_rows(tmp_path)
    check_store(readings, messages, 300_000)
    print(f"{len(readings)} readings, {len(messages)} messages, reported up to {reported}")
    stored = {}
    for r in readings:
        stored[r.meter] = max(stored.get(r.meter, 0), r.seq)
    assert set(reported) == set(METERS)
    assert all(stored[m] >= reported[m] for m in METERS), "a reading reported committed is missing"
    gaps = sum(1 for r in readings if "gap" in r.flags)
    assert gaps >= 5 * len(METERS)  # each restart leaves a gap in every meter (the sun kept shining)
    assert messages, "no publish window was handed to the outbox"
    assert all("Traceback" not in text for text in outputs)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_sample_and_exits_cleanly(tmp_path: Path, signum: int) -> None:
    run = Run(tmp_path)
    run.wait_commits(5)
    run.proc.send_signal(signum)
    assert run.finish(timeout=10) == 0
    assert f"{signal.Signals(signum).name} received" in run.text
    assert "energy manager stopped after" in run.text
    assert "Traceback" not in run.text
    readings, messages = load_rows(tmp_path)
    check_store(readings, messages, 300_000)
    assert len(readings) // len(METERS) >= len(run.committed())
    assert not any(r.salt in run.text for r in readings)  # logs never show salts (they protect households)
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    try:
        with make_sessionmaker(engine)() as s:
            anchor = json.loads(s.get(EnergyState, "clock").value_json)
    finally:
        engine.dispose()
    # the clock anchor settlement reads is kept current by every sample
    assert anchor["community_ms"] >= max(r.ts_ms for r in readings) and anchor["speed"] == 3600
    beat = read_heartbeats(tmp_path)["energy-manager"]  # what `scb status` and the supervisor look at
    assert beat["loops"]["sampling"]["error"] is None and beat["loops"]["sampling"]["detail"]["pending_samples"] == 0


def test_one_energy_manager_per_data_directory(tmp_path: Path) -> None:
    first = Run(tmp_path)
    try:
        first.wait_commits(1)
        second = Run(tmp_path)
        assert second.finish(timeout=30) == 2
        assert "another energy manager is running" in second.text
        assert "Traceback" not in second.text
    finally:
        first.proc.send_signal(signal.SIGTERM)
        assert first.finish() == 0


def test_samples_option_and_bad_configuration_give_one_line_errors(tmp_path: Path) -> None:
    run = Run(tmp_path, "--samples", "3")
    assert run.finish(timeout=30) == 0
    assert len(run.committed()) == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('[energy]\nsample_interval_s = "often"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(bad), "energy-manager"], cwd=tmp_path,
                          env={**env, "SCB_DATA_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'scb: energy.sample_interval_s must be a number from 0.01 to 86400, not "often"'
    ]
