"""The hub's uploader: it survives a fleet outage (retried with backoff, nothing lost, the cursors unmoved), resumes
after a restart where it stopped, and runs as the process `scb fleet-upload` (killed with SIGKILL and started
again, it catches up; SIGTERM ends it with exit 0); `scb run` plans it only when `[fleet] url` is set."""
from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from fleet.auth import allow
from fleet.db import open_fleet_database
from fleet.models import FleetBatch, FleetHub as FleetHubRow, FleetReading
from fleet.server import RunningFleet
from hub.fleet.models import FleetUploadCursor
from hub.fleet.upload import backlog
from scb.config import Config
from scb.loop import Heartbeat, read_heartbeats
from tests.conftest import REPO, free_port
from tests.fleet.conftest import FleetHub, drain, start_fleet
from tests.settlement.conftest import write_toml

pytestmark = pytest.mark.slow
#: Generous: the machine is shared; every wait below polls for progress and ends as soon as it is seen.
CEILING_S = 180.0


def wait_for(what: str, check: Callable[[], Any], ceiling: float = CEILING_S) -> Any:
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fleet_readings(fleet: RunningFleet) -> int:
    """Readings on the running fleet, through its own engine. Why not a new engine per call: each would migrate
    the database again (on SQLite in a write transaction) at every poll, competing with the server it watches."""
    with fleet.factory() as session:
        return int(session.scalar(select(func.count(FleetReading.id))) or 0)


def hub_readings(h: FleetHub) -> int:
    with h.hub.factory() as session:
        return int(session.scalar(select(func.count(StoredReading.id))) or 0)


def cursor(h: FleetHub, stream: str) -> int:
    with h.hub.factory() as session:
        row = session.get(FleetUploadCursor, stream)
        return int(row.cursor) if row else 0


def prepared_fleet(tmp: Path, account: str) -> str:
    """A fleet database that admits `account`, before any server runs on it."""
    url = f"sqlite:///{tmp / 'fleet.sqlite3'}"
    engine, factory = open_fleet_database(url)
    allow(factory, account)
    engine.dispose()
    return url


def test_an_outage_is_retried_and_loses_nothing_and_a_restart_resumes(hubs: tuple[FleetHub, FleetHub],
                                                                      tmp_path: Path) -> None:
    _, b = hubs
    b.reset_cursors()
    port = free_port()
    url = prepared_fleet(tmp_path, b.account.address)
    uploader = b.uploader(f"http://127.0.0.1:{port}", batch_max_items=60)
    heartbeat = Heartbeat(tmp_path, "fleet-upload", min_interval_s=0.0)
    stop = threading.Event()
    worker = threading.Thread(target=uploader.run_forever, args=(stop, heartbeat, 0.05), daemon=True)
    worker.start()
    try:
        # the fleet is down: the loop fails, shows it, and keeps its place
        wait_for("two failed attempts", lambda: (read_heartbeats(tmp_path).get("fleet-upload", {}).get("loops", {})
                                                 .get("fleet-upload", {}).get("failures", 0) >= 2))
        beat = read_heartbeats(tmp_path)["fleet-upload"]["loops"]["fleet-upload"]
        assert "FleetUnavailable" in beat["error"]
        assert cursor(b, "reading") == 0 and worker.is_alive()
        with b.hub.factory() as session:
            waiting = backlog(session)
        assert waiting["waiting"]["reading"] == hub_readings(b) and "cannot be reached" in waiting["last_error"]
        # the fleet comes up on that port: the uploader catches up by itself
        with start_fleet(tmp_path, url, port=port) as fleet:
            wait_for("every reading on the fleet", lambda: fleet_readings(fleet) == hub_readings(b))
            wait_for("the loop healthy again", lambda: read_heartbeats(tmp_path)["fleet-upload"]["loops"]
                     ["fleet-upload"]["error"] is None)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    with b.hub.factory() as session:
        assert backlog(session)["waiting"]["reading"] == 0


def test_a_restarted_uploader_goes_on_from_its_cursors(hubs: tuple[FleetHub, FleetHub], tmp_path: Path) -> None:
    _, b = hubs
    b.reset_cursors()
    url = prepared_fleet(tmp_path, b.account.address)
    with start_fleet(tmp_path, url) as fleet:
        first = b.uploader(fleet.url, batch_max_items=25)
        for _ in range(3):
            assert first.step() == 0.0  # full batches: more to come
        reached = cursor(b, "reading")
        assert reached == 75  # the hub's reading ids start at 1
        del first  # the process is gone; only the database remembers
        steps = drain(b.uploader(fleet.url, batch_max_items=25))
        with fleet.factory() as session:
            batches = int(session.scalar(select(func.count(FleetBatch.id))) or 0)
            stored = int(session.scalar(select(func.count(FleetReading.id))) or 0)
        assert stored == hub_readings(b)
        assert batches == 3 + steps  # nothing was sent twice: the second uploader began at reading 76


def test_scb_fleet_upload_as_a_process_survives_kill_9(hubs: tuple[FleetHub, FleetHub], tmp_path: Path) -> None:
    """Hub A's own account (the hub role on its contract admits it: no `scb fleet allow`), as `scb run` starts it."""
    a, _ = hubs
    a.reset_cursors()
    url = f"sqlite:///{tmp_path / 'fleet.sqlite3'}"
    with start_fleet(tmp_path, url, rpc_url=a.anvil.url, contract=a.hub.system.contract) as fleet:
        config = Config(data=copy.deepcopy(a.hub.config.data))
        config.data["fleet"] = {"url": fleet.url, "upload_interval_s": 0.2, "heartbeat_interval_s": 1.0,
                                "batch_max_items": 20}
        toml = write_toml(config, tmp_path / "hub.toml")
        command = [sys.executable, "-m", "hub.cli", "--config", str(toml), "fleet-upload"]
        log = open(tmp_path / "fleet-upload.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for("some readings uploaded", lambda: cursor(a, "reading") >= 40)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            at_kill = cursor(a, "reading")
            proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            wait_for("every reading on the fleet", lambda: fleet_readings(fleet) == hub_readings(a))
            with fleet.factory() as session:
                hub = session.scalars(select(FleetHubRow)).one()
            assert hub.account == a.account.address and hub.name == "hub-a"
            # a fresh session per look: one open session would read one snapshot (and, on SQLite, hold the
            # fleet's write lock), so it could never see the heartbeat arrive
            beat = json.loads(wait_for("a heartbeat", lambda: _heartbeat_json(fleet)))
            assert {"alerts", "processes", "status", "upload_backlog"} <= set(beat)
            assert at_kill < hub_readings(a)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    assert "Traceback" not in (tmp_path / "fleet-upload.log").read_text()


def _heartbeat_json(fleet: RunningFleet) -> str | None:
    with fleet.factory() as session:
        return session.scalar(select(FleetHubRow.heartbeat_json))


def test_scb_run_plans_the_uploader_only_with_a_fleet_url(tmp_path: Path) -> None:
    from hub.processes import plan

    base = {"hub": {"data_dir": str(tmp_path)}, "ethereum": {"rpc_url": "http://127.0.0.1:1"},
            "iota": {"node_url": "http://127.0.0.1:2"}}
    without = [c.name for c in plan(Config(data=base), None)]
    with_fleet = plan(Config(data={**base, "fleet": {"url": "http://fleet.example:8730"}}), "/etc/scb.toml")
    assert "fleet-upload" not in without
    child = next(c for c in with_fleet if c.name == "fleet-upload")
    assert child.argv[-3:] == ["--config", "/etc/scb.toml", "fleet-upload"] and child.beats


def test_scb_status_shows_the_upload_backlog(hubs: tuple[FleetHub, FleetHub], capsys: pytest.CaptureFixture[str]) \
        -> None:
    from hub.commands import print_status
    from hub.status import hub_status

    _, b = hubs
    b.reset_cursors()
    config = Config(data={**copy.deepcopy(b.hub.config.data), "fleet": {"url": "http://127.0.0.1:1"}})
    status = hub_status(config, b.hub.factory)
    fleet = status["fleet_upload"]
    assert fleet["url"] == "http://127.0.0.1:1" and fleet["waiting"]["reading"] == hub_readings(b)
    assert fleet["total"] >= hub_readings(b) and fleet["batches_sent"] == 0
    print_status(status)
    assert f"fleet upload to http://127.0.0.1:1: waiting reading {hub_readings(b)}" in capsys.readouterr().out
    assert hub_status(b.hub.config, b.hub.factory)["fleet_upload"] is None  # no [fleet] url: no line
