"""Smoke test of the README's first command: `./start_scb.sh` on a temporary data directory.

It waits for the first settled period, verifies one of its addresses with `scb verify`, stops the hub with
SIGTERM, checks that every process it started has stopped and that nothing was lost, then starts it again and
checks that it resumes with the same chain, contract and database.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from scb.config import load_config
from scb.db import open_database
from settlement.models import SettlementPeriod
from hub.processes import alive
from tests.hub.hub_queries import settled_address
from tests.conftest import free_port, wait_while_running

REPO = Path(__file__).resolve().parents[2]
SCB = str(Path(sys.executable).with_name("scb"))



def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(REPO / "start_scb.sh")], cwd=REPO, env=env, stdout=open(log, "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)


#: polls once a second while start_scb.sh runs (tests/conftest.py)
wait_for = partial(wait_while_running, name="start_scb.sh", poll_s=1.0)


def stop(hub: subprocess.Popen[bytes], data: Path) -> list[int]:
    table = json.loads((data / "run" / "processes.json").read_text())
    pids = [p["pid"] for p in table["processes"]]
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(timeout=60) == 0
    time.sleep(0.5)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.slow
def test_start_scb_runs_settles_verifies_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env.update({
        "SCB_DATA_DIR": str(data),
        "SCB_TANGLE_NODE__PORT": str(free_port()),
        "SCB_MAM__API_PORT": str(free_port()),
        "SCB_ETHEREUM__LOCAL_PORT": str(free_port()),
        "SCB_DASHBOARD__PORT": str(free_port()),
        # shorter periods than the demo default (an hour of community time = a real minute) keep the test short
        "SCB_SETTLEMENT__PERIOD_S": "900",
        "SCB_SETTLEMENT__LATENESS_S": "120",
        "SCB_SETTLEMENT__CHECK_INTERVAL_S": "2",
    })
    log = tmp_path / "hub.log"
    hub = start(env, log)
    try:
        wait_for("the announcement", lambda: "first MAM message at" in log.read_text(), 120, hub, log)
        config = load_config(environ={k: v for k, v in env.items() if k.startswith("SCB_")})
        factory = open_database(config)

        address = wait_for("the first settled period", partial(settled_address, factory), 240, hub, log)
        verify = subprocess.run([SCB, "verify", address], env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "Traceback" not in verify.stdout + verify.stderr

        def contract_line() -> str | None:
            out = subprocess.run([SCB, "chain", "info"], env=env, cwd=REPO, capture_output=True, text=True,
                                 timeout=60)
            if out.returncode != 0 or not out.stdout:
                return None
            # "chain 31337, SolarProperty 0x..., system 1 (block N, time)": the chain and contract, not the block
            return out.stdout.splitlines()[0].split(" (block")[0]

        contract = wait_for("the contract", contract_line, 60, hub, log)
        assert "SolarProperty 0x" in contract
        leftover = stop(hub, data)
        assert leftover == [], f"processes still running after SIGTERM: {leftover}"

        with factory() as s:
            per_meter = s.execute(select(StoredReading.meter, func.count(), func.min(StoredReading.seq),
                                         func.max(StoredReading.seq)).group_by(StoredReading.meter)).all()
            assert per_meter, "no readings were stored"
            for meter, count, low, high in per_meter:
                assert (low, high) == (1, count), f"meter {meter}: sequence has gaps or duplicates"
            readings_before = s.scalar(select(func.count()).select_from(StoredReading))
            settled_before = s.scalar(select(func.max(SettlementPeriod.period_id)))

        # again: the same database, tangle and chain (the local chain's state was kept)
        def reading_count() -> int:
            with factory() as s:  # closed at once: an open session would hold SQLite's write lock
                return s.scalar(select(func.count()).select_from(StoredReading))

        hub = start(env, log)
        wait_for("more readings after the restart", lambda: reading_count() > readings_before, 120, hub, log)
        assert wait_for("the chain after the restart", contract_line, 60, hub, log) == contract
        again = subprocess.run([SCB, "verify", address], env=env, cwd=REPO, capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert stop(hub, data) == []
        with factory() as s:
            assert s.scalar(select(func.max(SettlementPeriod.period_id))) >= settled_before
    finally:
        if hub.poll() is None:
            hub.kill()
