"""The Home Assistant bridge against a real mosquitto and a hub that settled periods on a real anvil.

Home Assistant is played by a paho client subscribed to `homeassistant/#` and the state topics: it checks the
retained discovery configs and the states against the database and the chain, sends Home Assistant's birth
message, and sees the bridge's last will when `scb home-assistant` is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from sqlalchemy import func, select

from energy_manager.models import StoredReading
from home_assistant.bridge import Bridge, make_bridge
from home_assistant.discovery import HOUSEHOLD_ENTITIES, SYSTEM_ENTITIES
from home_assistant.settings import mqtt_settings
from scb.config import Config
from scb.errors import ConfigError, SecretFileError
from settlement.chain import dev_account
from tests.conftest import REPO
from tests.services.mosquitto import AUTH_PASSWORD, AUTH_USER, Broker, wait_for
from tests.settlement.conftest import Anvil, Hub, make_hub, start_anvil, write_toml
from tests.web3_reference import contract_of

SUMMER_MS = 1_908_266_400_000  # 2030-06-21T10:00:00Z: the panels produce, the bills are not zero
HOUR_MS = 3_600_000
PREFIX = "homeassistant"


@dataclass
class Settled:
    hub: Hub
    anvil: Anvil


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settled]:
    anvil = start_anvil()
    try:
        hub = make_hub(tmp_path_factory.mktemp("ha-hub"), anvil.url, SUMMER_MS)
        c = contract_of(hub.client, hub.system.contract)
        c.functions.deposit(hub.system.system_id).transact({"from": dev_account(1).address, "value": 10**17})
        hub.run_until(SUMMER_MS + HOUR_MS + 20 * 60_000)
        assert hub.settle().settled == [1]
        yield Settled(hub, anvil)
    finally:
        anvil.stop()


class HomeAssistant:
    """Home Assistant as the broker sees it: subscribed to the discovery prefix and the hub's states."""

    def __init__(self, broker: Broker, base: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="home-assistant-test")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{PREFIX}/#", 1), (f"{base}/#", 1)])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            found = [p for t, p, _r in self.messages if t == topic]
        return found[-1] if found else None

    def topics(self, prefix: str) -> set[str]:
        with self.lock:
            return {t for t, _p, _r in self.messages if t.startswith(prefix)}

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(1 for t, _p, _r in self.messages if t == topic)

    def birth(self) -> None:
        self.client.publish(f"{PREFIX}/status", "online", qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config_for(settled: Settled, broker: Broker, **mqtt: Any) -> Config:
    data = json.loads(json.dumps(settled.hub.config.data))
    data["mqtt"] = {"url": broker.url, "interval_s": 1.0, "retry_max_s": 2.0, **mqtt}
    return Config(data=data)


def bridge_for(settled: Settled, broker: Broker, **mqtt: Any) -> Bridge:
    return make_bridge(config_for(settled, broker, **mqtt), settled.hub.factory)


def test_home_assistant_discovers_every_entity_and_the_states_agree(settled: Settled, broker: Broker) -> None:
    hub = settled.hub
    bridge = bridge_for(settled, broker)
    base = bridge.topics.base_topic
    assert base == "scb/test-hub"
    bridge.start()
    try:
        wait_for(bridge.connected.is_set, what="the bridge connected")
        assert bridge.step() is None
        ha = HomeAssistant(broker, base)  # subscribes after the fact: retained messages only
        try:
            configs = f"{PREFIX}/sensor/scb_test-hub/", f"{PREFIX}/binary_sensor/scb_test-hub/"
            expected = len(SYSTEM_ENTITIES) + len(hub.system.holders) * len(HOUSEHOLD_ENTITIES)
            wait_for(lambda: len(ha.topics(configs[0]) | ha.topics(configs[1])) == expected, what="every config")
            wait_for(lambda: ha.latest(f"{base}/h3/state") is not None, what="the states")
            assert ha.latest(f"{base}/availability") == b"online"
            energy = json.loads(ha.latest(f"{PREFIX}/sensor/scb_test-hub/h1_energy/config"))  # type: ignore[arg-type]
            assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == \
                ("energy", "total_increasing", "kWh")
            assert energy["state_topic"] == f"{base}/h1/state"
            with hub.factory() as session:
                wh = dict(session.execute(select(StoredReading.party, func.sum(StoredReading.delta_wh))
                                          .group_by(StoredReading.party)).all())
            c = contract_of(hub.client, hub.system.contract)
            for party, account in hub.system.holders.items():
                state = json.loads(ha.latest(f"{base}/{party}/state"))  # type: ignore[arg-type]
                assert state["energy"] == round(wh[party] / 1000, 3) > 0
                prepaid, debt, _due, good, _owned = c.functions.supplyStatus(hub.system.system_id, account).call()
                assert state["debt"] == round(debt / 10**18, 9) and state["deposit"] == round(prepaid / 10**18, 9)
                assert state["good_standing"] == ("ON" if good else "OFF")
                assert state["power"] is not None and state["power"] >= 0
            assert json.loads(ha.latest(f"{base}/h1/state"))["deposit"] > 0  # type: ignore[arg-type]
            system = json.loads(ha.latest(f"{base}/system/state"))  # type: ignore[arg-type]
            assert system["generation"] == round(wh["system"] / 1000, 3) > 0

            # Home Assistant restarts: its birth message makes the bridge send every config again
            before = ha.count(f"{PREFIX}/sensor/scb_test-hub/h2_debt/config")
            ha.birth()
            wait_for(lambda: ha.count(f"{PREFIX}/sensor/scb_test-hub/h2_debt/config") > before,
                     what="configs sent again after the birth message")

            # new readings: the totals grow (incrementally) and never decrease
            hub.run_until(SUMMER_MS + HOUR_MS + 40 * 60_000)
            first = json.loads(ha.latest(f"{base}/h2/state"))["energy"]  # type: ignore[arg-type]
            bridge.step()
            wait_for(lambda: json.loads(ha.latest(f"{base}/h2/state"))["energy"] > first,  # type: ignore[arg-type]
                     what="a larger total")
            with hub.factory() as session:
                h2_wh = session.scalar(select(func.sum(StoredReading.delta_wh)).where(StoredReading.party == "h2"))
            assert json.loads(ha.latest(f"{base}/h2/state"))["energy"] == round(h2_wh / 1000, 3)  # type: ignore
        finally:
            ha.close()
    finally:
        bridge.stop()
    # a clean stop says offline itself (no last will is sent then)
    ha = HomeAssistant(broker, base)
    try:
        wait_for(lambda: ha.latest(f"{base}/availability") == b"offline", what="offline after stop")
    finally:
        ha.close()


def test_a_broker_that_is_down_costs_the_step_nothing_and_is_found_again(settled: Settled, broker: Broker) -> None:
    bridge = bridge_for(settled, broker)
    bridge.start()
    try:
        wait_for(bridge.connected.is_set, what="connected")
        broker.stop()
        wait_for(lambda: not bridge.connected.is_set(), what="the loss noticed")
        started = time.monotonic()
        waiting = bridge.step()
        assert waiting is not None and "MQTT broker" in waiting.reason
        assert time.monotonic() - started < 1.0  # no network wait: it reads nothing and publishes nothing
        broker.start()
        wait_for(bridge.connected.is_set, timeout=60, what="reconnected")
        assert bridge.step() is None
        ha = HomeAssistant(broker, bridge.topics.base_topic)  # a fresh broker (no persistence): all sent again
        try:
            wait_for(lambda: ha.latest(f"{PREFIX}/sensor/scb_test-hub/h1_energy/config") is not None
                     and ha.latest(f"{bridge.topics.base_topic}/h1/state") is not None, what="configs and states")
        finally:
            ha.close()
    finally:
        bridge.stop()


def test_last_will_when_the_process_is_killed(settled: Settled, broker: Broker, tmp_path: Path) -> None:
    config = config_for(settled, broker)
    config.data["database"] = {"url": settled.hub.config.database_url}  # the hub's database, a data dir of its own
    config.data["hub"]["data_dir"] = str(tmp_path / "data")
    path = write_toml(config, tmp_path / "scb.toml")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(path), "home-assistant"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ha = HomeAssistant(broker, "scb/test-hub")
    try:
        wait_for(lambda: ha.latest("scb/test-hub/availability") == b"online", alive=lambda: proc.poll() is None,
                 timeout=60, what="online")
        wait_for(lambda: ha.latest("scb/test-hub/h1/state") is not None, what="states from the process")
        beat = tmp_path / "data" / "run" / "heartbeat" / "home-assistant.json"
        wait_for(beat.exists, what="the process's heartbeat")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: ha.latest("scb/test-hub/availability") == b"offline", what="the last will")
    finally:
        ha.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_login_with_a_password_file(settled: Settled, auth_broker: Broker, tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(AUTH_PASSWORD + "\n")
    secret.chmod(0o600)
    bridge = bridge_for(settled, auth_broker, username=AUTH_USER, password_file=str(secret))
    bridge.start()
    try:
        wait_for(bridge.connected.is_set, what="logged in")
    finally:
        bridge.stop()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it")
    wrong.chmod(0o600)
    refused = bridge_for(settled, auth_broker, username=AUTH_USER, password_file=str(wrong))
    refused.start()
    try:
        wait_for(lambda: "refused" in refused.last_error, what="the login refused")
        waiting = refused.step()
        assert waiting is not None and "refused" in waiting.reason
    finally:
        refused.stop()


@pytest.mark.parametrize("mqtt, message", [
    ({"url": "http://broker"}, "mqtt.url must be an mqtt URL"),
    ({"url": "mqtt://user:pw@broker"}, "mqtt.url must be an mqtt URL"),
    ({"url": "mqtt://broker", "password_file": "/nonexistent/pw", "username": "u"}, "does not exist"),
    ({"url": "mqtt://broker", "ca_file": "/etc/ssl/ca.pem"}, "mqtt.ca_file is set but mqtt.url is not mqtts://"),
    ({"url": "mqtt://broker", "base_topic": "scb/#"}, "mqtt.base_topic must be an MQTT topic without wildcards"),
    ({"url": "mqtt://broker", "interval_s": 0.1}, "mqtt.interval_s must be a number from 1"),
    ({"url": "mqtt://broker", "colour": "red"}, "unknown setting mqtt.colour"),
    ({"url": ""}, "mqtt.url is not set"),
])
def test_settings_errors_name_the_key(mqtt: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        mqtt_settings(Config(data={"mqtt": mqtt}), "hub")


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o644)
    with pytest.raises(SecretFileError):
        mqtt_settings(Config(data={"mqtt": {"url": "mqtt://b", "username": "u", "password_file": str(secret)}}), "h")


def test_scb_run_starts_the_bridge_only_with_a_broker(tmp_path: Path) -> None:
    from hub.processes import plan

    base = {"hub": {"data_dir": str(tmp_path)}}
    assert "home-assistant" not in [c.name for c in plan(Config(data=base), None)]
    names = [c.name for c in plan(Config(data={**base, "mqtt": {"url": "mqtt://127.0.0.1"}}), None)]
    assert names[-1] == "home-assistant"

