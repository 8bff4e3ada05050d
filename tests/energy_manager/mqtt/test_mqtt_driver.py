"""The mqtt driver against a real broker (mosquitto, started by the fixture): messages are published with paho's
own publish helper, exactly as a Tasmota plug or a Shelly would send them; nothing of paho is mocked."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest
from sqlalchemy import select

from energy_manager.drivers import mqtt
from energy_manager.drivers.mqtt import MqttDevice
from energy_manager.models import InputCounter, StoredReading
from energy_manager.monitor import EnergyMonitor
from energy_manager.service import build_device
from energy_manager.settings import EnergySettings, load_energy_settings
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from scb.errors import ConfigError
from tests.services.mosquitto import Broker, wait_for

pytestmark = pytest.mark.timeout(120)


def now_ms() -> int:
    return int(time.time() * 1000)


def tasmota_time(ms: int) -> str:
    """Tasmota's `Time`: local time (UTC here, the preset's default zone), whole seconds, no offset."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def settings_for(device: dict[str, Any], *, register: str = "import_wh", power: str = "power_w") -> EnergySettings:
    return load_energy_settings(Config(data={"energy": {
        "clock_speed": 1, "publish_window_s": 60,
        "devices": {"meter": {"driver": "mqtt", **device}},
        "meters": {"h1": {"device": "meter", "circuit": "consumption", "party": "h1", "register": register,
                          "power": power}},
    }}))


def device_for(settings: EnergySettings, *, max_age_ms: int = 180_000) -> MqttDevice:
    """The device as build_device makes it, with short reconnect delays so the tests do not wait for paho."""
    o = settings.devices["meter"].options
    return MqttDevice("meter", o["host"], o["port"], o["topics"], max_age_ms=max_age_ms, username=o["username"],
                      password_file=o["password_file"], retry_min_s=0.05, retry_max_s=0.5)


def send(broker: Broker, topic: str, payload: bytes | str | dict[str, Any], **kw: Any) -> None:
    body = json.dumps(payload) if isinstance(payload, dict) else payload
    publish.single(topic, body, qos=1, hostname="127.0.0.1", port=broker.port, **kw)


@pytest.fixture()
def database(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'scb.sqlite3'}")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_tasmota_sensor_message_reaches_a_reading(broker: Broker, database) -> None:
    settings = settings_for({"url": broker.url, "preset": "tasmota", "device": "plug-h1"})
    device = build_device(settings.devices["meter"], settings, 0)
    assert isinstance(device, MqttDevice) and device.max_age_ms == 3 * 60_000
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        mon = EnergyMonitor(settings, database, {"meter": device})
        first = now_ms() // 1000 * 1000 - 5_000
        # 1.001 kWh: as floats, x 1000 is 1000.9999999999999 and the register would lose a Wh
        send(broker, "tele/plug-h1/SENSOR", {"Time": tasmota_time(first), "ENERGY": {
            "TotalStartTime": "2024-01-01T00:00:00", "Total": 1.001, "Yesterday": 0.2, "Today": 0.1, "Period": 0,
            "Power": 45, "ApparentPower": 50, "ReactivePower": 20, "Factor": 0.9, "Voltage": 231, "Current": 0.2}})
        wait_for(lambda: mon.tick(now_ms()).readings, what="first reading")
        send(broker, "tele/plug-h1/SENSOR", {"Time": tasmota_time(first + 4_000),
                                             "ENERGY": {"Total": 1.0125, "Power": 120, "Voltage": 230,
                                                        "Current": 0.6}})
        wait_for(lambda: mon.tick(now_ms()).readings, what="second reading")
        with database() as s:
            rows = s.execute(select(StoredReading).order_by(StoredReading.seq)).scalars().all()
            assert [(r.meter, r.ts_ms, r.register_wh, r.power_w) for r in rows] == [
                ("h1", first, 1001, 45), ("h1", first + 4_000, 1012, 120)]
            assert rows[1].delta_wh == 11
            assert s.execute(select(InputCounter)).scalars().all() == []
    finally:
        device.close()


def test_shelly_em_preset_merges_power_and_energy_topics(broker: Broker) -> None:
    settings = settings_for({"url": broker.url, "preset": "shelly-em", "device": "shellypro3em-a1"})
    device = device_for(settings)
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        stamp = now_ms() // 10 * 10 - 2_000
        send(broker, "shellypro3em-a1/status/emdata:0", {"id": 0, "a_total_act_energy": 41000.5,
                                                        "total_act": 123456.78, "total_act_ret": 4567.25,
                                                        "ts": stamp / 1000})
        sample = wait_for(lambda: device.read(now_ms()), what="emdata sample")
        assert sample.ts_ms == stamp
        assert sample.values == {"import_wh": 123456.78, "export_wh": 4567.25}
        # em:0 without a timestamp: its arrival time is used; the energy values stay in the merged sample
        before = now_ms()
        send(broker, "shellypro3em-a1/status/em:0", {"id": 0, "a_current": 2.1, "a_voltage": 231.4,
                                                    "total_current": 6.3, "total_act_power": -1520.5})
        sample = wait_for(lambda: device.read(now_ms()), what="em sample")
        assert before <= sample.ts_ms <= now_ms()
        assert sample.values == {"import_wh": 123456.78, "export_wh": 4567.25, "power_w": -1520.5,
                                 "current_a": 6.3, "voltage_v": 231.4}
        assert device.read(now_ms()) is None  # nothing new since
        assert device.take_events() == []
    finally:
        device.close()


def custom(broker: Broker, **extra: Any) -> dict[str, Any]:
    return {"url": broker.url, "topic": "meters/m1", "time_path": "t", "time_format": "unix_ms",
            "values": {"import_wh": {"path": "E.total_kwh", "scale": 1000}, "power_w": "P"}, **extra}


def test_bad_messages_are_counted_with_their_payload(broker: Broker) -> None:
    device = device_for(settings_for(custom(broker)))
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        t = now_ms()
        bad = [b"not json at all", b"[1, 2]", b'{"E": {"total_kwh": NaN}, "P": 1}', b"\xff\xfe",
               b"[" * 200 + b"]" * 200, json.dumps({"E": {}, "P": 5}).encode(),
               json.dumps({"E": {"total_kwh": "12.5"}, "P": 5}).encode(),
               json.dumps({"E": {"total_kwh": 12.5}, "P": True}).encode(),
               json.dumps({"E": {"total_kwh": 12.5}, "P": 5, "t": "yesterday"}).encode()]
        for payload in bad:
            send(broker, "meters/m1", payload)
        send(broker, "meters/m1", {"E": {"total_kwh": 12.5}, "P": 5, "t": t})
        sample = wait_for(lambda: device.read(now_ms()), what="the good message")
        assert sample.values == {"import_wh": 12500.0, "power_w": 5.0} and sample.ts_ms == t
        events = device.take_events()
        assert [e.kind for e in events] == ["bad_json"] * 5 + ["missing_path", "non_numeric", "non_numeric",
                                                               "bad_time"]
        assert [e.raw for e in events] == bad[:4] + [bad[4][:mqtt.MAX_RAW]] + bad[5:]
        assert "E.total_kwh" in events[5].detail and "import_wh" in events[5].detail
    finally:
        device.close()


def test_stale_replayed_and_future_messages_are_counted(broker: Broker) -> None:
    device = device_for(settings_for(custom(broker, max_age_s=60)), max_age_ms=60_000)
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        t = now_ms()
        for stamp, total in ((t - 600_000, 1.0),  # ten minutes old: stale
                             (t, 2.0),  # accepted
                             (t, 3.0),  # same time again: replayed
                             (t - 1_000, 4.0),  # older than the last accepted: replayed
                             (t + 3_600_000, 5.0),  # an hour ahead: the device's clock is wrong
                             (t + 1_000, 6.0)):  # accepted
            send(broker, "meters/m1", {"E": {"total_kwh": total}, "P": 1, "t": stamp})
        wait_for(lambda: len(device.events._items) >= 4, what="four events")
        sample = wait_for(lambda: device.read(now_ms()), what="a sample")
        assert sample.values["import_wh"] == 6000.0 and sample.ts_ms == t + 1_000
        assert [e.kind for e in device.take_events()] == ["stale", "replayed", "replayed", "bad_time"]
        assert device.checkpoint() == {"last_ts": {"meters/m1": t + 1_000}}
        # the sampling loop itself falls behind (or the meter goes quiet): the newest message ages out
        send(broker, "meters/m1", {"E": {"total_kwh": 7.0}, "P": 1, "t": t + 2_000})
        wait_for(lambda: device._messages >= 3, what="third message")
        assert device.read(t + 2_000 + 60_001) is None
        assert [e.kind for e in device.take_events()] == ["stale"]
        assert device.read(t + 2_000 + 60_002) is None and device.take_events() == []  # counted once
    finally:
        device.close()


def test_replay_detection_survives_a_restart(broker: Broker) -> None:
    settings = settings_for(custom(broker))
    t = now_ms()
    device = device_for(settings)
    device.restore({"last_ts": {"meters/m1": t}})
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        send(broker, "meters/m1", {"E": {"total_kwh": 1.0}, "P": 1, "t": t})  # e.g. a retained message
        send(broker, "meters/m1", {"E": {"total_kwh": 1.5}, "P": 1, "t": t + 1})
        sample = wait_for(lambda: device.read(now_ms()), what="a sample")
        assert sample.values["import_wh"] == 1500.0
        assert [e.kind for e in device.take_events()] == ["replayed"]
    finally:
        device.close()


def test_a_broker_that_disappears_is_reconnected(broker: Broker) -> None:
    device = device_for(settings_for(custom(broker)))
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed")
        assert device.connects == 1
        broker.stop()
        wait_for(lambda: not device.connected.is_set(), what="connection lost")
        time.sleep(1.0)  # several failed reconnect attempts meanwhile (0.05 s, 0.1 s, ... 0.5 s)
        assert device.read(now_ms()) is None
        broker.start()  # same port
        wait_for(device.connected.is_set, what="re-subscribed")
        t = now_ms()
        send(broker, "meters/m1", {"E": {"total_kwh": 2.0}, "P": 1, "t": t})
        sample = wait_for(lambda: device.read(now_ms()), what="a sample after the return")
        assert sample.values["import_wh"] == 2000.0
        kinds = [e.kind for e in device.take_events()]
        assert kinds == ["unavailable", "reconnected"]  # once per outage, however many attempts failed
        assert device.connects == 2
    finally:
        device.close()


def test_a_broker_absent_at_start_is_waited_for(mosquitto: str, tmp_path: Path) -> None:
    broker = Broker(mosquitto, tmp_path)
    device = device_for(settings_for(custom(broker)))
    device.open()
    try:
        wait_for(lambda: device.events._items, what="unavailable event")
        broker.start()
        wait_for(device.connected.is_set, what="subscribed")
        assert [e.kind for e in device.take_events()] == ["unavailable", "reconnected"]
    finally:
        device.close()
        broker.stop()


def secret(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


def test_user_and_password_file(auth_broker: Broker, tmp_path: Path) -> None:
    good = secret(tmp_path, "s3cret-pw", 0o600)
    device = device_for(settings_for(custom(auth_broker, username="hub", password_file=str(good))))
    device.open()
    try:
        wait_for(device.connected.is_set, what="subscribed with a password")
        send(auth_broker, "meters/m1", {"E": {"total_kwh": 1.0}, "P": 1, "t": now_ms()},
             auth={"username": "hub", "password": "s3cret-pw"})
        assert wait_for(lambda: device.read(now_ms()), what="a sample").values["import_wh"] == 1000.0
    finally:
        device.close()
    good.write_text("wrong-pw\n")
    device = device_for(settings_for(custom(auth_broker, username="hub", password_file=str(good))))
    device.open()
    try:
        events = wait_for(lambda: device.take_events(), what="refused")
        assert events[0].kind == "unavailable" and "refused" in events[0].detail
        assert not device.connected.is_set()
    finally:
        device.close()


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    loose = secret(tmp_path, "s3cret-pw", 0o644)
    options = {"url": "mqtt://127.0.0.1:1883", "preset": "tasmota", "device": "plug-h1", "username": "hub",
               "password_file": str(loose)}
    with pytest.raises(ConfigError, match=r"password_file.*readable by others \(mode 0644\); run: chmod 600"):
        settings_for(options)
    with pytest.raises(ConfigError, match="does not exist"):
        settings_for({**options, "password_file": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="username is empty"):
        settings_for({**options, "username": "", "password_file": str(secret(tmp_path, "x", 0o600))})


@pytest.mark.parametrize(("change", "message"), [
    ({"url": "http://127.0.0.1:1883"}, r"energy\.devices\.meter\.url must be an mqtt URL"),
    ({"url": "mqtt://hub:pw@127.0.0.1"}, r"url must be an mqtt URL .*password_file"),
    ({"url": "mqtt://127.0.0.1:99999"}, r"url must be an mqtt URL"),
    ({"preset": "sonoff"}, r"preset must be one of \"tasmota\", \"shelly-em\", \"custom\""),
    ({"device": ""}, r"device must be the device's MQTT name for the tasmota preset"),
    ({"topic": "tele/x/SENSOR"}, r"topic cannot be combined with preset = \"tasmota\""),
    ({"device": "plug/+"}, r"without wildcards"),
    ({"time_zone": "Mars/Olympus"}, r"time_zone must be an IANA time zone"),
    ({"max_age_s": -1}, r"max_age_s must be a number from 0 to 86400"),
    ({"colour": "red"}, r"colour"),
])
def test_configuration_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    options = {"url": "mqtt://127.0.0.1", "preset": "tasmota", "device": "plug-h1", **change}
    with pytest.raises(ConfigError, match=message):
        settings_for(options)


@pytest.mark.parametrize(("change", "message"), [
    ({"topic": ""}, r"topic must be an MQTT topic"),
    ({"topic": "meters/#"}, r"without wildcards"),
    ({"values": {}}, r"values must map at least one value name"),
    ({"values": {"import_wh": "E..x"}}, r"values\.import_wh must be a JSON path"),
    ({"values": {"import_wh": {"path": "E.x", "scale": 0}}}, r"values\.import_wh\.scale must be a number"),
    ({"values": {"import_wh": {"path": "E.x", "factor": 2}}}, r"factor"),
    ({"values": {"9lives": "E.x"}}, r"values\.9lives must be a value name"),
    ({"time_format": "rfc822"}, r"time_format must be one of \"iso\", \"unix\", \"unix_ms\""),
    ({"device": "plug-h1"}, r"device is for a preset"),
])
def test_custom_configuration_errors(change: dict[str, Any], message: str) -> None:
    options = {"url": "mqtt://127.0.0.1", "topic": "meters/m1", "values": {"import_wh": "E.x"}, "time_path": "t",
               **change}
    with pytest.raises(ConfigError, match=message):
        settings_for(options, power="")


def test_tasmota_local_time_in_a_configured_zone() -> None:
    options = settings_for({"url": "mqtt://127.0.0.1", "preset": "tasmota", "device": "p",
                            "time_zone": "Europe/Madrid"}).devices["meter"].options
    values, ts = mqtt.decode(b'{"Time":"2025-06-21T14:00:00","ENERGY":{"Total":0.29,"Power":0,"Voltage":0,'
                             b'"Current":0}}', options["topics"][0])
    assert ts == int(datetime(2025, 6, 21, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)  # CEST is UTC+2
    assert values["import_wh"] == 290.0
