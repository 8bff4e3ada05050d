"""Operator alerts: each raised exactly when its condition holds (hub.alerts), and `scb status` on a real
database reports them with a non-zero exit."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hub.alerts import Snapshot, compute
from hub.settings import AlertSettings

SETTINGS = AlertSettings(outbox_max_age_s=600, settle_max_delay_s=1800, min_settlements_funded=10, loop_error_s=60)
NOW = 1_800_000_000.0
REPO = Path(__file__).resolve().parents[2]


def codes(snap: Snapshot) -> list[str]:
    return [a.code for a in compute(snap, SETTINGS)]


def test_a_healthy_hub_raises_nothing() -> None:
    snap = Snapshot(now=NOW, sampling_expected=True, last_reading_at=NOW - 10, sample_wall_s=60,
                    oldest_unpublished_at=NOW - 30, unpublished=1, node_reachable=True,
                    oldest_unsettled_close_at=NOW + 100, balance_wei=10**18, settle_cost_wei=10**15,
                    processes=[{"name": "mam-client", "state": "running", "running": True,
                                "loops": {"publisher": {"error": None}}}])
    assert codes(snap) == []


def test_no_reading_for_three_sample_intervals() -> None:
    assert codes(Snapshot(now=NOW, sampling_expected=True, last_reading_at=NOW - 179, sample_wall_s=60)) == []
    assert codes(Snapshot(now=NOW, sampling_expected=True, last_reading_at=NOW - 181, sample_wall_s=60)) == \
        ["no-readings"]
    # never a reading: counted from when the energy manager started
    assert codes(Snapshot(now=NOW, sampling_expected=True, energy_started_at=NOW - 200, sample_wall_s=60)) == \
        ["no-readings"]
    # nothing expected to sample (no energy manager in this hub's process table)
    assert codes(Snapshot(now=NOW, sampling_expected=False, last_reading_at=NOW - 9999, sample_wall_s=60)) == []


def test_stale_outbox_only_while_the_node_answers() -> None:
    old = dict(now=NOW, oldest_unpublished_at=NOW - 601, unpublished=3)
    assert codes(Snapshot(**old, node_reachable=True)) == ["outbox-stale"]
    assert codes(Snapshot(**old, node_reachable=None)) == ["outbox-stale"]
    assert codes(Snapshot(**old, node_reachable=False)) == ["node-unreachable"]
    assert codes(Snapshot(now=NOW, oldest_unpublished_at=NOW - 599, unpublished=3, node_reachable=True)) == []


def test_a_blocked_channel_is_named_with_the_nodes_reason() -> None:
    snap = Snapshot(now=NOW, oldest_unpublished_at=NOW - 5000, unpublished=2, node_reachable=True,
                    blocked=[{"channel": "readings", "message_id": 7, "reason": "invalid transaction",
                              "since": NOW - 100, "retry_at": NOW + 60}])
    alerts = compute(snap, SETTINGS)
    assert [a.code for a in alerts] == ["channel-blocked"]  # not also "outbox-stale": the cause is known
    assert "readings" in alerts[0].message and "invalid transaction" in alerts[0].message


def test_unsettled_period_and_low_balance() -> None:
    assert codes(Snapshot(now=NOW, oldest_unsettled_close_at=NOW - 1801)) == ["period-unsettled"]
    assert codes(Snapshot(now=NOW, oldest_unsettled_close_at=NOW - 1799)) == []
    assert codes(Snapshot(now=NOW, balance_wei=9 * 10**15 + 1, settle_cost_wei=10**15)) == ["low-balance"]
    assert codes(Snapshot(now=NOW, balance_wei=10 * 10**15, settle_cost_wei=10**15)) == []


def test_processes_and_loops() -> None:
    procs = [{"name": "a", "state": "failing", "running": False, "note": "exited 5 times in 60 s"},
             {"name": "b", "state": "hung", "running": True, "note": "stopped beating"},
             {"name": "c", "state": "restarting", "running": False},
             {"name": "d", "state": "running", "running": True,
              "loops": {"publisher": {"error": "OperationalError: database is locked", "failures": 9,
                                      "error_since": NOW - 61}}},
             {"name": "e", "state": "running", "running": True,
              "loops": {"sampling": {"error": "OperationalError: database is locked", "failures": 1,
                                     "error_since": NOW - 5}}}]
    assert codes(Snapshot(now=NOW, processes=procs)) == ["process-failing", "process-hung", "process-stopped",
                                                         "loop-failing"]


def test_scb_status_reports_alerts_from_a_real_database(tmp_path: Path) -> None:
    """A hub whose last reading is an hour old and whose outbox has held a message for an hour."""
    from energy_manager.models import StoredReading
    from mam_client.models import OutboxMessage
    from scb.config import Config
    from scb.db import open_database, transaction

    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    factory = open_database(config)
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    with transaction(factory) as session:
        msg = OutboxMessage(channel="readings", message="ABC", created_at=hour_ago)
        session.add(msg)
        session.add(StoredReading(hub="h", meter="m", seq=1, party="p1", circuit="load", ts_ms=1, register_wh=0,
                                  power_w=0, salt="0" * 32, canonical=b"{}", digest="0" * 64, delta_wh=0,
                                  window_start_ms=0, created_at=hour_ago))
    # an energy manager that `scb run` started an hour ago
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "processes.json").write_text(json.dumps({"supervisor": None, "processes": [
        {"name": "energy-manager", "pid": None, "state": "running", "started_at": hour_ago.timestamp()}]}))
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "status", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"SCB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                       "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1, proc.stderr
    status = json.loads(proc.stdout)
    got = {a["code"]: a for a in status["alerts"]}
    # the supervisor is not running, so the process is shown stopped: no reading is expected then
    assert set(got) == {"outbox-stale", "period-unsettled"}, status["alerts"]
    # the reading (community time 1 ms) belongs to the period ending at 3600 s, closed 300 s (lateness) later;
    # at the default 60x clock that is (3600 + 300) / 60 = 65 wall seconds after it was stored
    closed = datetime.fromisoformat(got["period-unsettled"]["since"].replace("Z", "+00:00"))
    assert abs((closed - hour_ago).total_seconds() - 65) <= 1
    assert status["outbox"]["by_state"] == {"queued": 1}
    text = subprocess.run([sys.executable, "-m", "hub.cli", "status"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"SCB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "PYTHONPATH": str(REPO)})
    assert text.returncode == 1 and "ALERT outbox-stale" in text.stdout
