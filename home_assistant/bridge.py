"""`scb home-assistant`: publishes the hub's households and system to Home Assistant over MQTT.

A paho-mqtt 2.x client runs its network loop in its own thread (`loop_start`) and reconnects by itself with
exponential backoff (1 s up to `retry_max_s`). On every connection it publishes (retained) each entity's
discovery config (home_assistant.discovery) and "online" on the availability topic, whose last will is
"offline", and subscribes to Home Assistant's birth topic (`<discovery_prefix>/status`): when Home Assistant
says "online" (it restarted and forgot what it discovered) the configs and the last states are sent again.

The loop (`Bridge.step`, under scb.loop's failure policy: heartbeat process "home-assistant", loop "publish")
reads the states every `interval_s` (home_assistant.states) and publishes them, retained, one JSON document per
device. While the broker is unreachable nothing is read or queued: the step reports it in the heartbeat and the
next step after the reconnection publishes the current values (totals are totals, nothing is lost). Why a process
of its own: a broker that is down or slow must never slow the sampling or the MAM publishing; here it can only
delay these states.
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from sqlalchemy.orm import Session, sessionmaker

from home_assistant.discovery import OFFLINE, ONLINE, Topics, configs
from home_assistant.settings import MqttSettings
from home_assistant.states import StateReader
from scb.loop import Guard, Heartbeat, Waiting
from settlement.system import SystemRef, newest_system

log = logging.getLogger("home_assistant")

PROCESS = "home-assistant"
LOOP = "publish"
#: Messages paho keeps while a publish waits for the network: beyond it, publish fails at once rather than piling
#: up memory on a Pi while the broker is away (the next step sends the current values anyway).
MAX_QUEUED = 1000
REFUSED = "the broker refused the connection"


class Bridge:
    """One MQTT connection and the state loop's step. `client` is for tests (default: a paho client)."""

    def __init__(self, settings: MqttSettings, topics: Topics, factory: sessionmaker[Session],
                 reader: StateReader, client: paho.Client | None = None,
                 system_for: Callable[[], SystemRef | None] | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.factory = factory
        self.reader = reader
        self.system_for = system_for or (lambda: newest_system(factory))
        self.connected = threading.Event()
        self.last_error = "not connected yet"
        self._lock = threading.Lock()
        self._holders: dict[str, str] | None = None  # whose configs were sent on this connection
        self._states: dict[str, dict[str, Any]] = {}
        self.client = client or paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                            protocol=paho.MQTTv311)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self.client.tls_set_context(settings.tls_context())
        self.client.will_set(topics.availability, OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(1, max(1, int(settings.retry_max_s)))
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message

    # -- the connection (paho's network thread) ---------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"{REFUSED}: {reason}"
            log.error("MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        log.info("connected to MQTT broker %s:%d", self.settings.host, self.settings.port)
        self.last_error = ""
        client.subscribe(self.topics.birth, qos=1)
        with self._lock:
            self._holders = None
        self.announce()
        self.connected.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if self.last_error.startswith(REFUSED):
            return  # paho disconnects after a refused login: the refusal is what to show
        self.last_error = f"disconnected from the broker ({reason})"
        log.warning("MQTT broker %s:%d: %s; reconnecting", self.settings.host, self.settings.port, self.last_error)

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        self.connected.clear()
        self.last_error = f"the broker {self.settings.host}:{self.settings.port} cannot be reached"

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self.topics.birth and message.payload.strip() == ONLINE.encode():
            log.info("Home Assistant came online: sending the discovery configs and states again")
            with self._lock:
                self._holders = None
            self.announce()

    # -- publishing -------------------------------------------------------------------------------------------
    def announce(self, system: SystemRef | None = None) -> None:
        """The discovery configs of every entity, availability online and the last states (all retained).

        `system`: the one the caller already read (the step), so it is not read twice; the paho callbacks pass
        none and it is read here."""
        if system is None:
            system = self.system_for()
        holders = dict(system.holders) if system is not None else {}
        with self._lock:
            if self._holders == holders:
                return
            self._holders = holders
            states = dict(self._states)
        for topic, config in configs(self.topics, holders).items():
            self.client.publish(topic, json.dumps(config, sort_keys=True), qos=1, retain=True)
        self.client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        for device, state in states.items():
            self.client.publish(self.topics.state(device), json.dumps(state, sort_keys=True), qos=0, retain=True)

    def step(self) -> Waiting | None:
        """Read the states and publish them; the broker away or the chain unreadable is shown, not raised."""
        if not self.connected.is_set():
            return Waiting(f"MQTT broker {self.settings.host}:{self.settings.port}: {self.last_error}")
        system = self.system_for()
        self.announce(system)  # a holder map that changed (a new system) gets its configs
        states, error = self.reader.states(system)
        with self._lock:
            self._states = states
        for device, state in states.items():
            self.client.publish(self.topics.state(device), json.dumps(state, sort_keys=True), qos=0, retain=True)
        return Waiting(error) if error else None

    def stop(self) -> None:
        """Say "offline" (a clean stop sends no last will) and disconnect."""
        if self.connected.is_set():
            self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------------ the process


def make_bridge(config: Any, factory: sessionmaker[Session] | None = None) -> Bridge:
    from dataclasses import replace

    from energy_manager.settings import load_energy_settings
    from home_assistant.settings import mqtt_settings
    from scb.db import init_db, make_sessionmaker
    from settlement.chain import ChainClient
    from settlement.settings import ethereum_settings

    hub_id = load_energy_settings(config).hub_id
    settings = mqtt_settings(config, hub_id)
    factory = factory or make_sessionmaker(init_db(config))
    eth = ethereum_settings(config)
    # a short timeout: a dead node delays the states by seconds, not by the settlement's patience
    eth = replace(eth, timeout_s=min(eth.timeout_s, 5.0))
    reader = StateReader(factory, lambda: ChainClient(eth))
    return Bridge(settings, Topics(settings.discovery_prefix, settings.base_topic, hub_id), factory, reader)


def run(config: Any, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
    bridge = make_bridge(config)
    bridge.start()
    try:
        Guard(LOOP, heartbeat or Heartbeat(config.data_dir, PROCESS), bridge.settings.interval_s).run(bridge.step,
                                                                                                      stop)
    finally:
        bridge.stop()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(PROCESS, help="publish households and the system to Home Assistant over MQTT ([mqtt] url; "
                                     "started by `scb run` when it is set)")
    p.set_defaults(handler=cmd_home_assistant)


def cmd_home_assistant(args: argparse.Namespace) -> int:
    import signal

    from scb.config import load_config

    config = load_config(args.config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    run(config, stop)
    return 0
