"""The mqtt driver over TLS (`mqtts://`) against a real mosquitto with a TLS listener, its CA and certificates
made by openssl in the test: values arrive through a verified connection, a client certificate is presented when
the broker asks for one, and a broker the hub cannot trust is an outage that says why, never plain MQTT."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest

from energy_manager.drivers.mqtt import MqttDevice
from energy_manager.drivers.serial_line import RECONNECTED, UNAVAILABLE
from energy_manager.settings import EnergySettings, load_energy_settings
from hub.cli import main
from scb.config import Config
from scb.errors import ConfigError, SecretFileError
from tests.energy_manager.mqtt.test_scan import config as scan_config
from tests.services.mosquitto import AUTH_PASSWORD, AUTH_USER, Broker, BrokerTls, TlsFiles, wait_for

pytestmark = pytest.mark.timeout(120)
TOPIC = "tele/plug-h1/SENSOR"


def settings_for(**device: Any) -> EnergySettings:
    return load_energy_settings(Config(data={"energy": {
        "clock_speed": 1, "publish_window_s": 60,
        "devices": {"meter": {"driver": "mqtt", "preset": "tasmota", "device": "plug-h1", **device}},
        "meters": {"h1": {"device": "meter", "circuit": "consumption", "party": "h1", "register": "import_wh",
                          "power": "power_w"}},
    }}))


def device_for(settings: EnergySettings) -> MqttDevice:
    """The device as build_device makes it, with short reconnect delays so the tests do not wait for paho."""
    o = settings.devices["meter"].options
    return MqttDevice("meter", o["host"], o["port"], o["topics"], max_age_ms=180_000, tls=o["tls"],
                      ca_file=o["ca_file"], cert_file=o["cert_file"], key_file=o["key_file"],
                      retry_min_s=0.05, retry_max_s=0.5)


def tasmota(total_kwh: float, power_w: float) -> str:
    return json.dumps({"ENERGY": {"Total": total_kwh, "Power": power_w, "Voltage": 230, "Current": 0.5}})


def send(broker: Broker, files: TlsFiles, body: str, *, client_cert: bool = False) -> None:
    tls: dict[str, str] = {"ca_certs": str(files.ca_cert)}
    if client_cert:
        tls |= {"certfile": str(files.client_cert), "keyfile": str(files.client_key)}
    publish.single(TOPIC, body, qos=1, hostname=broker.host, port=broker.port, tls=tls)


@pytest.fixture()
def client_cert_broker(mosquitto: str, tls_files: TlsFiles, tmp_path: Path) -> Iterator[Broker]:
    with Broker(mosquitto, tmp_path, tls=BrokerTls(tls_files, require_client_cert=True)) as b:
        yield b


def collect_until(device: MqttDevice, done: Any, *, what: str) -> tuple[list[Any], list[Any]]:
    samples: list[Any] = []
    events: list[Any] = []

    def step() -> bool:
        sample = device.read(int(time.time() * 1000))
        if sample is not None:
            samples.append(sample)
        events.extend(device.take_events())
        return bool(done(samples, events))

    wait_for(step, what=what)
    return samples, events


def test_values_arrive_over_a_verified_tls_connection(tls_broker: Broker, tls_files: TlsFiles) -> None:
    settings = settings_for(url=tls_broker.url, ca_file=str(tls_files.ca_cert))
    assert tls_broker.url.startswith("mqtts://")
    d = device_for(settings)
    d.open()
    try:
        wait_for(d.connected.is_set, what="subscribed over TLS")
        send(tls_broker, tls_files, tasmota(1.25, 80.0))
        samples, events = collect_until(d, lambda s, e: s, what="a sample over TLS")
    finally:
        d.close()
    assert samples[0].values == {"import_wh": 1250.0, "power_w": 80.0, "voltage_v": 230.0, "current_a": 0.5}
    assert events == []


def test_user_and_password_over_tls(mosquitto: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(f"{AUTH_PASSWORD}\n")
    secret.chmod(0o600)
    with Broker(mosquitto, tmp_path, users={AUTH_USER: AUTH_PASSWORD}, tls=BrokerTls(tls_files)) as broker:
        o = settings_for(url=broker.url, ca_file=str(tls_files.ca_cert), username=AUTH_USER,
                         password_file=str(secret)).devices["meter"].options
        d = MqttDevice("meter", o["host"], o["port"], o["topics"], max_age_ms=180_000, tls=True,
                       ca_file=o["ca_file"], username=o["username"], password_file=o["password_file"],
                       retry_min_s=0.05, retry_max_s=0.5)
        d.open()
        try:
            wait_for(d.connected.is_set, what="logged in over TLS")
            publish.single(TOPIC, tasmota(4.0, 5.0), qos=1, hostname=broker.host, port=broker.port,
                           tls={"ca_certs": str(tls_files.ca_cert)},
                           auth={"username": AUTH_USER, "password": AUTH_PASSWORD})
            samples, events = collect_until(d, lambda s, e: s, what="a sample with a login over TLS")
        finally:
            d.close()
    assert samples[0].values["import_wh"] == 4000.0 and events == []


def test_a_client_certificate_is_presented_when_the_broker_asks(client_cert_broker: Broker,
                                                                tls_files: TlsFiles) -> None:
    settings = settings_for(url=client_cert_broker.url, ca_file=str(tls_files.ca_cert),
                            cert_file=str(tls_files.client_cert), key_file=str(tls_files.client_key))
    d = device_for(settings)
    d.open()
    try:
        wait_for(d.connected.is_set, what="subscribed with a client certificate")
        send(client_cert_broker, tls_files, tasmota(2.5, 10.0), client_cert=True)
        samples, _ = collect_until(d, lambda s, e: s, what="a sample with a client certificate")
    finally:
        d.close()
    assert samples[0].values["import_wh"] == 2500.0


def test_without_the_client_certificate_the_broker_is_an_outage(client_cert_broker: Broker,
                                                                 tls_files: TlsFiles) -> None:
    d = device_for(settings_for(url=client_cert_broker.url, ca_file=str(tls_files.ca_cert)))
    d.open()
    try:
        _, events = collect_until(d, lambda s, e: e, what="the outage reported")
        time.sleep(0.5)
        events += d.take_events()
        assert not d.connected.is_set()
    finally:
        d.close()
    assert [e.kind for e in events] == [UNAVAILABLE]  # once per outage, not once per retry
    # with TLS 1.3 the broker refuses after the handshake, in its first record; the reason is OpenSSL's
    assert events[0].detail.startswith(f"broker 127.0.0.1:{client_cert_broker.port} refused by TLS: ")
    assert "certificate" in events[0].detail


def test_a_tls_broker_that_disappears_is_reconnected(tls_broker: Broker, tls_files: TlsFiles) -> None:
    d = device_for(settings_for(url=tls_broker.url, ca_file=str(tls_files.ca_cert)))
    d.open()
    try:
        wait_for(d.connected.is_set, what="subscribed over TLS")
        tls_broker.stop()
        _, events = collect_until(d, lambda s, e: e, what="the loss reported")
        tls_broker.start()
        wait_for(d.connected.is_set, what="subscribed again")
        send(tls_broker, tls_files, tasmota(5.0, 1.0))
        samples, later = collect_until(d, lambda s, e: s, what="a sample after the return")
    finally:
        d.close()
    assert [e.kind for e in events + later] == [UNAVAILABLE, RECONNECTED]
    assert events[0].detail.startswith(f"lost broker 127.0.0.1:{tls_broker.port}")
    assert samples[0].values["import_wh"] == 5000.0


def test_a_broker_certificate_from_another_ca_is_refused(tls_broker: Broker, tls_files: TlsFiles) -> None:
    d = device_for(settings_for(url=tls_broker.url, ca_file=str(tls_files.other_ca_cert)))
    d.open()
    try:
        send(tls_broker, tls_files, tasmota(1.0, 1.0))  # the broker is up and has data: none may be taken
        samples, events = collect_until(d, lambda s, e: e, what="the refusal reported")
        time.sleep(0.5)
        samples += [s for s in [d.read(int(time.time() * 1000))] if s is not None]
        assert not d.connected.is_set()
    finally:
        d.close()
    assert samples == []
    assert events[0].kind == UNAVAILABLE
    # OpenSSL's own words follow (mosquitto sends its chain: "self-signed certificate in certificate chain")
    assert events[0].detail.startswith(f"broker 127.0.0.1:{tls_broker.port} refused by TLS: certificate verify "
                                       "failed: ")


def test_plain_mqtt_to_a_tls_listener_gets_no_values(tls_broker: Broker, tls_files: TlsFiles) -> None:
    d = device_for(settings_for(url=f"mqtt://127.0.0.1:{tls_broker.port}"))
    d.open()
    try:
        send(tls_broker, tls_files, tasmota(1.0, 1.0))
        samples, events = collect_until(d, lambda s, e: e, what="the outage reported")
    finally:
        d.close()
    assert samples == [] and events[0].kind == UNAVAILABLE
    assert events[0].detail.startswith(f"broker 127.0.0.1:{tls_broker.port} closed the connection before "
                                       "accepting it")


def test_scan_over_tls(tls_broker: Broker, tls_files: TlsFiles, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = scan_config(tmp_path, tls_broker.url, ca_file=str(tls_files.ca_cert))
    stop = threading.Event()

    def plug() -> None:  # publishes until the scan has taken a message, as a plug would every TelePeriod
        while not stop.wait(0.2):
            send(tls_broker, tls_files, tasmota(3.5, 42.0))

    publisher = threading.Thread(target=plug, daemon=True)
    publisher.start()
    try:
        assert main(["--config", cfg, "meters", "scan", "--json", "--wait", "60"]) == 0
    finally:
        stop.set()
        publisher.join(10)
    result = json.loads(capsys.readouterr().out)["devices"][0]
    assert result["ok"] is True and result["where"] == tls_broker.url
    assert result["values"]["import_wh"] == {"value": 3500.0, "unit": "Wh"}


def test_scan_of_an_untrusted_broker_stops_with_the_reason(tls_broker: Broker, tls_files: TlsFiles,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = scan_config(tmp_path, tls_broker.url, ca_file=str(tls_files.other_ca_cert))
    started = time.monotonic()
    assert main(["--config", cfg, "meters", "scan", "--wait", "60"]) == 1
    assert time.monotonic() - started < 30  # an untrusted certificate does not fix itself while one waits
    out = capsys.readouterr().out
    assert "NO ANSWER: unavailable: broker 127.0.0.1:" in out and "refused by TLS: certificate verify failed" in out


# -- configuration -------------------------------------------------------------------------------------------
def test_mqtts_defaults_to_port_8883() -> None:
    o = settings_for(url="mqtts://broker.example").devices["meter"].options
    assert (o["host"], o["port"], o["tls"], o["ca_file"]) == ("broker.example", 8883, True, "")
    o = settings_for(url="mqtt://broker.example").devices["meter"].options
    assert (o["port"], o["tls"]) == (1883, False)


def test_tls_settings_are_checked_at_start(tls_files: TlsFiles, tmp_path: Path) -> None:
    ca = str(tls_files.ca_cert)
    with pytest.raises(ConfigError, match=r"energy\.devices\.meter\.ca_file is set but .*url is not mqtts://"):
        settings_for(url="mqtt://127.0.0.1", ca_file=ca)
    with pytest.raises(ConfigError, match=r"cert_file and .*key_file go together"):
        settings_for(url="mqtts://127.0.0.1", ca_file=ca, cert_file=str(tls_files.client_cert))
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"ca_file .*ca\.pem is not a PEM CA certificate") as refused:
        settings_for(url="mqtts://127.0.0.1", ca_file=str(not_pem))
    assert str(refused.value).endswith("(no certificate or crl found)")  # OpenSSL's reason, no _ssl.c position
    with pytest.raises(ConfigError, match=r"ca_file .*missing\.pem is not a PEM CA certificate"):
        settings_for(url="mqtts://127.0.0.1", ca_file=str(tmp_path / "missing.pem"))
    loose = tmp_path / "client.key"
    loose.write_bytes(tls_files.client_key.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(SecretFileError, match="readable by others"):
        settings_for(url="mqtts://127.0.0.1", ca_file=ca, cert_file=str(tls_files.client_cert),
                     key_file=str(loose))
    wrong_key = tmp_path / "server.key"
    wrong_key.write_bytes(tls_files.server_key.read_bytes())
    wrong_key.chmod(0o600)
    with pytest.raises(ConfigError, match=r"cert_file .* and key_file .* are not a PEM certificate"):
        settings_for(url="mqtts://127.0.0.1", ca_file=ca, cert_file=str(tls_files.client_cert),
                     key_file=str(wrong_key))
