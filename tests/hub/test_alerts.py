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


def scb_status(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SCB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "SCB_ENERGY__CLOCK_SPEED": "1"}  # community time is wall time: periods close by the wall clock
    return subprocess.run([sys.executable, "-m", "hub.cli", "status", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)


def test_scb_status_reports_alerts_from_a_real_database(tmp_path: Path) -> None:
    """A hub whose outbox has held a message for an hour, whose other channel the node refused, whose readings
    of two hours ago are not settled and whose account holds gas for 3 settlements."""
    from energy_manager.models import StoredReading
    from mam_client.models import PREPARED, OutboxMessage
    from scb.config import Config
    from scb.db import open_database, save_json_value, transaction
    from settlement.models import SettlementState

    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    factory = open_database(config)
    now = datetime.now(timezone.utc)
    hour_ago, two_hours_ago = now - timedelta(hours=1), now - timedelta(hours=2)
    ts_ms = int(two_hours_ago.timestamp() * 1000)
    with transaction(factory) as session:
        session.add(OutboxMessage(channel="readings", message="ABC", created_at=hour_ago))
        session.add(OutboxMessage(channel="other", message="ABD", created_at=hour_ago, state=PREPARED,
                                  payload="X", address="A" * 81, refusal="invalid transaction",
                                  refused_at=hour_ago))
        session.add(StoredReading(hub="scb-demo-hub", meter="m", seq=1, party="p1", circuit="load", ts_ms=ts_ms,
                                  register_wh=0, power_w=0, salt="0" * 32, canonical=b"{}", digest="0" * 64,
                                  delta_wh=0, window_start_ms=0, created_at=two_hours_ago))
        save_json_value(session, SettlementState, "hub-account", {
            "account": "0x" + "11" * 20, "balance_wei": str(3 * 200_000 * 10**9), "settle_gas": 200_000,
            "settle_gas_source": "receipt", "gas_price_wei": str(10**9), "checked_at": now.timestamp()})
    proc = scb_status(tmp_path, "--json")
    assert proc.returncode == 1, proc.stderr
    status = json.loads(proc.stdout)
    got = {a["code"]: a for a in status["alerts"]}
    # no `scb run` here, so no process and no reading is expected
    assert set(got) == {"channel-blocked", "period-unsettled", "low-balance"}, status["alerts"]
    assert "other" in got["channel-blocked"]["message"] and "invalid transaction" in got["channel-blocked"]["message"]
    assert "gas for 3 more settlement(s)" in got["low-balance"]["message"]
    # the reading's hour-long period (aligned on 3600 s) closed 300 s (lateness) after its end
    end_s = (ts_ms // 1000 // 3600 + 1) * 3600
    assert got["period-unsettled"]["since"] == datetime.fromtimestamp(end_s + 300, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert status["outbox"]["by_state"] == {"queued": 1, "prepared": 1}
    text = scb_status(tmp_path)
    assert text.returncode == 1 and "ALERT channel-blocked" in text.stdout


def test_a_stale_outbox_with_the_node_answering(tmp_path: Path) -> None:
    from mam_client.models import OutboxMessage
    from scb.config import Config
    from scb.db import open_database, transaction

    factory = open_database(Config(data={"hub": {"data_dir": str(tmp_path)}}))
    with transaction(factory) as session:
        session.add(OutboxMessage(channel="readings", message="ABC",
                                  created_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    proc = scb_status(tmp_path, "--json")
    assert proc.returncode == 1
    assert [a["code"] for a in json.loads(proc.stdout)["alerts"]] == ["outbox-stale"]


def test_no_alert_exits_0(tmp_path: Path) -> None:
    from scb.config import Config
    from scb.db import open_database

    open_database(Config(data={"hub": {"data_dir": str(tmp_path)}}))
    proc = scb_status(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alerts: none" in proc.stdout
