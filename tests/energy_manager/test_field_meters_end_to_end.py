"""Issue 11's "done when", end to end: a community whose meters are field meters (an SDM630 on the PV system and a
SunSpec grid meter behind one Modbus TCP gateway, a household's Tasmota plug publishing over MQTT) runs the
whole hub as a user runs it (`python -m hub.cli --config FILE run`: anvil, the tangle node, the energy manager,
the MAM publisher, settlement, the dashboard), and the meters' samples become readings that are attached in a
MAM message and settled in a period on the chain, which `scb verify` then proves from the tangle and the chain.

The meters are the ones the driver tests use (pymodbus's own server with the registers laid out as the manuals
do, a real mosquitto), imported from those tests. The clock is real time (clock_speed = 1: real meters), so the
settlement period and the MAM window are a few seconds, not an hour. Waits follow progress: a wait fails after
STALL_S without any change in what it watches, never after a total time.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from hub.processes import alive
from tests.conftest import REPO, free_port
from tests.energy_manager.modbus.meter_sim import MeterServer
from tests.energy_manager.modbus.test_sunspec import common, meter_203, sunspec_unit
from tests.energy_manager.modbus.test_tcp import sdm630
from tests.energy_manager.mqtt.conftest import Broker, broker, mosquitto  # noqa: F401 - the broker fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: A wait fails after this long without progress (the hub starts anvil, deploys the contract, does PoW...).
STALL_S = 60.0
MWM = 3
PV_UNIT, GRID_UNIT = 1, 240
SUNSPEC_BASE = 40000
TOPIC = "tele/plug-h1/SENSOR"
#: The meters of the configuration below, by the device that feeds them.
FIELD_METERS = {"pv": "modbus", "grid-import": "modbus", "grid-export": "modbus", "h1": "mqtt"}


def tasmota_time(s: int) -> str:
    """Tasmota's `Time`: local time (UTC, the preset's default zone), whole seconds, no offset."""
    return datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class Meters:
    """The PV meter counts its production up (1 Wh every 0.5 s: 7.2 kW) and the plug publishes a Tasmota SENSOR
    message each second with its own counter, as field meters do while the hub samples them."""

    def __init__(self, server: MeterServer, broker: Broker) -> None:
        self.server, self.broker = server, broker
        self.stop = threading.Event()
        self.published = 0
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._pv, daemon=True),
                         threading.Thread(target=self._plug, daemon=True)]

    def __enter__(self) -> "Meters":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(10)

    def _pv(self) -> None:
        wh = 10_000
        while not self.stop.wait(0.5):
            wh += 1
            self.server.units[PV_UNIT].put("input", 0x4A, "float32", "high_first", wh / 1000)

    def _plug(self) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plug-h1")
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        total_wh, last_s = 1_000, 0
        try:
            while not self.stop.wait(0.2):
                now_s = int(time.time())
                if now_s == last_s:  # Tasmota stamps whole seconds; one message a second keeps them strictly newer
                    continue
                last_s = now_s
                total_wh += 3
                body = {"Time": tasmota_time(now_s), "ENERGY": {"Total": total_wh / 1000, "Power": 45,
                                                                "Voltage": 231, "Current": 0.2}}
                info = client.publish(TOPIC, json.dumps(body), qos=1)
                info.wait_for_publish(5)
                if info.is_published():
                    self.published += 1
                else:  # recorded, and the test reports it
                    self.errors.append(f"message {total_wh} not published (rc {info.rc})")
        finally:
            client.disconnect()
            client.loop_stop()


class Hub:
    """One `scb run` in a temporary directory with free ports, configured with the field meters above."""

    def __init__(self, root: Path, modbus_port: int, broker: Broker) -> None:
        self.root = root
        self.data = root / "data"
        self.db_path = self.data / "scb.sqlite3"
        self.config_path = root / "scb.toml"
        self.log = root / "run.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
        self.env["SCB_LOG_LEVEL"] = "INFO"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path.write_text(f"""
[hub]
id = "field-hub"
data_dir = "{self.data}"

[ethereum]
local_port = {free_port()}

[iota]
mwm = {MWM}

[tangle_node]
port = {free_port()}
mwm = {MWM}
pow_threads = 1

[mam]
api_port = {free_port()}
poll_interval_s = 0.2
backoff_initial_s = 0.2
backoff_max_s = 2.0

[mam.channels.readings]
security = 1

[energy]
households = ["h1"]
clock_speed = 1             # real meters: real time
sample_interval_s = 1
publish_window_s = 5          # divides the period: each MAM message lies in one period

[energy.devices.pv]
driver = "modbus"
transport = "tcp"
host = "127.0.0.1"
port = {modbus_port}
unit = {PV_UNIT}
profile = "sdm630"
timeout_s = 1.0

[energy.devices.grid]
driver = "modbus"
transport = "tcp"
host = "127.0.0.1"
port = {modbus_port}
unit = {GRID_UNIT}
profile = "sunspec"
timeout_s = 1.0

[energy.devices.plug-h1]
driver = "mqtt"
url = "{broker.url}"
preset = "tasmota"
device = "plug-h1"
max_age_s = 30

[energy.meters.pv]
device = "pv"
circuit = "generation"
register = "export_wh"
power = "power_w"

[energy.meters.h1]
device = "plug-h1"
circuit = "consumption"
party = "h1"
register = "import_wh"
power = "power_w"

[energy.meters.grid-import]
device = "grid"
circuit = "grid_import"
register = "import_wh"
power = "power_w"

[energy.meters.grid-export]
device = "grid"
circuit = "grid_export"
register = "export_wh"

[settlement]
period_s = 10
lateness_s = 4
check_interval_s = 0.5
supply_interval_s = 1.0
retry_initial_s = 0.5
retry_max_s = 2.0

[dashboard]
port = {free_port()}
""")

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(self.config_path), "run"],
                                     cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def pids(self) -> list[int]:
        try:
            table = json.loads((self.data / "run" / "processes.json").read_text())
        except (OSError, ValueError):
            return []
        return [int(p["pid"]) for p in table.get("processes", []) if p.get("pid")]

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read in its own connection, closed at once (an open one would hold a WAL snapshot)."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            return conn.execute(query, params).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is not there yet
        finally:
            conn.close()

    def scb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(self.config_path), *args],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def wait(what: str, hub: Hub, condition: Callable[[], Any], progress: Callable[[], Hashable]) -> Any:
    """Poll `condition` until truthy; fail when `progress()` has not changed for STALL_S, or the hub exited."""
    last, since = progress(), time.monotonic()
    while True:
        assert hub.proc is not None and hub.proc.poll() is None, \
            f"scb run exited with {hub.proc and hub.proc.returncode} while waiting for {what}\n{hub.tail()}"
        result = condition()
        if result:
            return result
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= STALL_S:
            raise AssertionError(f"no progress for {STALL_S:.0f} s waiting for {what}: {now}\n{hub.tail()}")
        time.sleep(0.5)


@pytest.fixture()
def modbus_gateway() -> Iterator[MeterServer]:
    """One Modbus TCP gateway with the PV meter (SDM630, unit 1) and the SunSpec grid meter (model 203)."""
    server = MeterServer({PV_UNIT: sdm630(10.0, -2500.0), GRID_UNIT: sunspec_unit(SUNSPEC_BASE, common(), meter_203())},
                         ranges=((0, 400), (SUNSPEC_BASE, 300))).start_tcp()
    yield server
    server.stop()


def test_field_meters_flow_to_mam_and_settlement_and_verify(tmp_path: Path, modbus_gateway: MeterServer,
                                                            broker: Broker) -> None:
    hub = Hub(tmp_path, modbus_gateway.port, broker)
    with Meters(modbus_gateway, broker) as meters:
        hub.start()
        try:
            def stored() -> dict[str, int]:
                return dict(hub.sql("SELECT meter, count(*) FROM energy_readings GROUP BY meter"))

            def activity() -> Hashable:
                # anything the hub does counts as progress: readings, messages, periods
                return (tuple(sorted(stored().items())), tuple(hub.sql(
                    "SELECT state, count(*) FROM mam_messages GROUP BY state")), tuple(hub.sql(
                    "SELECT state, count(*) FROM settlement_periods GROUP BY state")), meters.published)

            wait("readings of every field meter", hub, lambda: set(stored()) >= set(FIELD_METERS), activity)

            def settled_with_all_meters() -> str | None:
                """The address of an attached MAM message whose readings all lie in settled periods, once such
                messages together carry readings of every field meter (verify checks a whole message)."""
                rows = hub.sql(
                    "SELECT m.address, group_concat(DISTINCT r.meter) FROM mam_messages m "
                    "JOIN energy_readings r ON r.message_id = m.id WHERE m.state = 'attached' GROUP BY m.id "
                    "HAVING sum(r.period IS NULL OR r.period NOT IN "
                    "(SELECT period_id FROM settlement_periods WHERE state = 'settled')) = 0 ORDER BY m.id")
                covered = {meter for _address, meters_ in rows for meter in meters_.split(",")}
                return rows[0][0] if rows and covered >= set(FIELD_METERS) else None

            address = wait("settled periods with every field meter's readings in attached messages", hub,
                           settled_with_all_meters, activity)
            assert not meters.errors, meters.errors

            # the plug's readings carry its own registers (Tasmota's kWh x 1000), the grid's the SunSpec scale
            plug = hub.sql("SELECT register_wh FROM energy_readings WHERE meter = 'h1' ORDER BY seq")
            assert [r for (r,) in plug] == sorted(r for (r,) in plug) and plug[0][0] > 1_000
            grid = hub.sql("SELECT DISTINCT register_wh FROM energy_readings WHERE meter = 'grid-import'")
            assert grid == [(1_234_560,)]
            pv = hub.sql("SELECT max(register_wh), sum(delta_wh) FROM energy_readings WHERE meter = 'pv'")
            assert pv[0][0] > 10_000 and pv[0][1] > 0  # the PV meter counted while it was sampled
            # settlement counted the field meters' energy: the PV meter's generation, the plug's consumption. A
            # meter's first reading carries no energy (nothing to count from), so the first settled period may hold
            # only that of the plug, which connects last: wait for a period that counts it.
            def counted() -> list[tuple[int, str]] | None:
                settled = hub.sql("SELECT generation_wh, consumption_json FROM settlement_periods "
                                  "WHERE state = 'settled' ORDER BY period_id")
                plug_wh = any(c["party"] == "h1" and c["wh"] > 0 for _, text in settled for c in json.loads(text))
                return settled if plug_wh and any(generation > 0 for generation, _ in settled) else None

            wait("a settled period counting the PV meter's and the plug's energy", hub, counted, activity)

            verify = hub.scb("verify", address)
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert "Traceback" not in verify.stdout + verify.stderr

            pids = hub.pids()
            assert pids, "the supervisor's process table lists no process"
            hub.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert hub.proc.wait(timeout=60) == 0, hub.tail()  # type: ignore[union-attr]
            deadline = time.monotonic() + 10  # the supervisor has waited for its children; this is a backstop
            while any(alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [p for p in pids if alive(p)] == [], "processes still running after SIGTERM"
            assert "Traceback" not in hub.log.read_text(errors="replace")
        finally:
            if hub.proc is not None and hub.proc.poll() is None:
                os.killpg(hub.proc.pid, signal.SIGKILL)
                hub.proc.wait()
