"""The whole hub on PostgreSQL (issue 14): `scb run` with `[database] url = "postgresql+psycopg://..."`.

A login role with a password (read from a 0600 `password_file`, never in the URL) owns an empty database on the
test server (tests/services/postgres.py). The hub migrates it, samples readings, publishes them to its local
tangle node (the publisher and the energy manager are killed with SIGKILL once each on the way: nothing is
lost, no one-time key is used twice), settles periods on its local anvil; then `scb verify`, `scb status --json` and the dashboard read
them, the hub stops on SIGTERM, and the readings have neither gaps nor duplicates. The password appears in no
log, no status and no command output.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from hub.processes import alive
from mam_client.models import OutboxMessage
from scb.config import load_config
from scb.db import open_database
from settlement.models import SETTLED, SettlementPeriod
from tests.hub.hub_queries import settled_address
from tests.conftest import REPO, free_port, wait_while_running
from tests.services.postgres import PostgresServer, database_name, postgres_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

SCB = str(Path(sys.executable).with_name("scb"))
PASSWORD = "pg-hub-secret-7f3a9c"  # a string that cannot appear in any output by chance
#: Ceilings for waits that follow progress (first start compiles nothing, but anvil and npm's node start on a
#: shared 2-core machine); never a timing expectation.
START_CEILING_S = 180.0
SETTLE_CEILING_S = 300.0


def hub_config(tmp: Path, url: str, password_file: Path) -> Path:
    path = tmp / "scb.toml"
    path.write_text(f"""
[hub]
id = "pg-hub"
data_dir = "{tmp / 'data'}"

[database]
url = "{url}"
password_file = "{password_file}"

[ethereum]
local_port = {free_port()}

[tangle_node]
port = {free_port()}

[mam]
api_port = {free_port()}
poll_interval_s = 0.2

[dashboard]
port = {free_port()}

[energy]
households = ["h1", "h2"]
sample_interval_s = 600
publish_window_s = 1200
clock_speed = 600
start = "2030-06-21T08:00:00Z"

[settlement]
period_s = 3600
lateness_s = 1200
check_interval_s = 0.5
retry_initial_s = 0.5
retry_max_s = 2.0
""", encoding="utf-8")
    return path


#: polls twice a second while `scb run` runs (tests/conftest.py)
wait_for = partial(wait_while_running, name="scb run", poll_s=0.5)


def process_entry(data: Path, name: str) -> dict[str, Any]:
    """The supervisor's row for process `name` (pid, state, restarts) from its process table."""
    table = json.loads((data / "run" / "processes.json").read_text())
    return next(p for p in table["processes"] if p["name"] == name)


def stop_everything(hub: subprocess.Popen[bytes], data: Path) -> None:
    """After a failure: SIGTERM (scb run stops its children), then SIGKILL whatever of ours still runs (a
    SIGKILLed supervisor would leave anvil running for the rest of the suite)."""
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(120)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait(60)
    try:
        pids = [p["pid"] for p in json.loads((data / "run" / "processes.json").read_text())["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for pid in pids:
        if pid and alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)  # anvil runs as node + its binary: the whole group
            except OSError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_hub_runs_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    role = f"hub_{os.urandom(3).hex()}"
    postgres_server.create_role(role, PASSWORD)
    url = postgres_server.url(database_name(postgres_server.create_database(owner=role)), user=role)
    secret = tmp_path / "db.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    config_path = hub_config(tmp_path, url, secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env["SCB_CONFIG"] = str(config_path)
    config = load_config(config_path, environ={})
    data = config.data_dir
    log = tmp_path / "run.log"

    hub = subprocess.Popen([SCB, "run"], cwd=REPO, env=env, stdout=open(log, "ab"),  # noqa: SIM115
                           stderr=subprocess.STDOUT)
    factory = None
    try:
        wait_for("the announcement", lambda: "first MAM message at" in log.read_text(), START_CEILING_S, hub, log)
        factory = open_database(config)

        # kill -9 the two busiest writers once each, mid-work: a dead process's connection ends its transaction and
        # releases the writer lock with it, and the restarted process resumes from the database
        for victim in ("mam-client", "energy-manager"):
            before = process_entry(data, victim)
            os.kill(before["pid"], signal.SIGKILL)
            wait_for(f"{victim} restarted", lambda v=victim, b=before: (
                (e := process_entry(data, v))["restarts"] > b["restarts"] and e["state"] == "running"
                and e["pid"] != b["pid"]), START_CEILING_S, hub, log)

        address = wait_for("a settled period with a published message", partial(settled_address, factory),
                           SETTLE_CEILING_S, hub, log)

        verify = subprocess.run([SCB, "verify", address], env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=180)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "Traceback" not in verify.stdout + verify.stderr

        status = subprocess.run([SCB, "status", "--json"], env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode in (0, 1), status.stderr  # 1: an alert is raised (e.g. a process still starting)
        body = json.loads(status.stdout)
        assert body["readings"]["count"] > 0
        assert body["outbox"], body
        assert PASSWORD not in status.stdout + status.stderr

        port = config.data["dashboard"]["port"]
        api = wait_for("the dashboard", lambda: get_json(port, "/api/status"), START_CEILING_S, hub, log)
        assert api["status"]["readings"]["count"] > 0
        energy = get_json(port, "/api/energy?bucket=hour&points=24")
        assert energy["points"] and any(p["generation_wh"] > 0 for p in energy["points"])
        assert get_json(port, "/api/energy?bucket=window")["points"]
        messages = get_json(port, "/api/messages")["messages"]
        assert address in {m["address"] for m in messages} or messages
        settlements = get_json(port, "/api/settlements")
        assert json.dumps(settlements).count('"period_id"') >= 1, settlements

        table = json.loads((data / "run" / "processes.json").read_text())
        pids = [p["pid"] for p in table["processes"]]
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(timeout=120) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in pids if alive(pid)] == []

        with factory() as s:
            sent = s.execute(select(OutboxMessage.channel, OutboxMessage.key_index, OutboxMessage.address)
                             .where(OutboxMessage.key_index.is_not(None))).all()
            assert sent
            for channel in {c for c, _, _ in sent}:  # no one-time key used twice, none skipped, across the kill
                indexes = sorted(k for c, k, _ in sent if c == channel)
                assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), f"{channel}: {indexes}"
            assert len({a for _, _, a in sent}) == len(sent), "two messages at one address"
            per_meter = s.execute(select(StoredReading.meter, func.count(), func.min(StoredReading.seq),
                                         func.max(StoredReading.seq)).group_by(StoredReading.meter)).all()
            assert per_meter
            for meter, count, low, high in per_meter:
                assert (low, high) == (1, count), f"meter {meter}: sequence has gaps or duplicates"
            assert s.scalar(select(func.count()).select_from(SettlementPeriod)
                            .where(SettlementPeriod.state == SETTLED)) >= 1

        outputs = [log.read_text(errors="replace")]
        outputs += [p.read_text(errors="replace") for p in (data / "logs").glob("*") if p.is_file()]
        assert all(PASSWORD not in text for text in outputs), "the database password reached a log"
        assert all("Traceback" not in text for text in outputs), "a traceback in the logs"
    finally:
        stop_everything(hub, data)
        if factory is not None:
            factory.kw["bind"].dispose()


def test_the_dashboards_database_cannot_write_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """dashboard.data.open_read_database on PostgreSQL: the schema is migrated, reads work, every write is refused
    by the server (default_transaction_read_only), and the hub's records stay as they were."""
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from dashboard.data import open_read_database
    from energy_manager.models import EnergyState

    url = postgres_server.create_database()
    try:
        config = load_config(environ={"SCB_DATA_DIR": str(tmp_path), "SCB_DATABASE__URL": url})
        writer = open_database(config)
        with writer.begin() as s:
            s.add(EnergyState(key="k", value_json="{}"))
        reader = open_read_database(config)
        with reader() as s:
            assert s.get(EnergyState, "k") is not None
        for change in (update(EnergyState).values(value_json="[]"), delete(EnergyState)):
            with pytest.raises(DBAPIError, match="read-only transaction"):
                with reader.begin() as s:
                    s.execute(change)
        with pytest.raises(DBAPIError, match="read-only transaction"):
            with reader.begin() as s:
                s.add(EnergyState(key="other", value_json="{}"))
        with writer() as s:
            assert [(r.key, r.value_json) for r in s.scalars(select(EnergyState))] == [("k", "{}")]
        for factory in (writer, reader):
            factory.kw["bind"].dispose()
    finally:
        postgres_server.drop_database(database_name(url))
