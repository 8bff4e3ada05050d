"""`scb meters scan` of an MQTT device against a real broker: the first message's values, or exit 1 with why
(no message, broker unreachable, login refused)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from hub.cli import main
from tests.conftest import free_port
from tests.services.mosquitto import Broker

pytestmark = pytest.mark.timeout(120)
TOPIC = "tele/plug-h1/SENSOR"


def config(tmp_path: Path, url: str, **extra: str) -> str:
    options = "".join(f'{key} = "{value}"\n' for key, value in extra.items())
    path = tmp_path / "scb.toml"
    path.write_text(f"""[hub]
data_dir = "{tmp_path / 'data'}"
[energy]
clock_speed = 1
[energy.devices.plug-h1]
driver = "mqtt"
url = "{url}"
preset = "tasmota"
device = "plug-h1"
{options}
[energy.meters.h1]
device = "plug-h1"
circuit = "consumption"
party = "h1"
register = "import_wh"
power = "power_w"
""")
    return str(path)


def tasmota_message() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return json.dumps({"Time": stamp, "ENERGY": {"Total": 12.345, "Power": 120, "Voltage": 231, "Current": 0.6}})


def test_scan_shows_the_first_message(broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # retained, as a broker keeps a device's last telemetry for a new subscriber
    publish.single(TOPIC, tasmota_message(), qos=1, retain=True, hostname="127.0.0.1", port=broker.port)
    cfg = config(tmp_path, broker.url)
    assert main(["--config", cfg, "meters", "scan", "--wait", "20"]) == 0
    out = capsys.readouterr().out
    assert f"plug-h1 (mqtt, {broker.url}): profile tasmota" in out
    assert "12345.000 Wh" in out and "120.000 W" in out and "231.000 V" in out
    assert main(["--config", cfg, "meters", "scan", "--json", "--wait", "20"]) == 0
    result = json.loads(capsys.readouterr().out)["devices"][0]
    assert result["ok"] is True and result["values"]["import_wh"] == {"value": 12345.0, "unit": "Wh"}
    assert result["details"] == {"topics": [TOPIC]}


def test_scan_without_a_message(broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, broker.url), "meters", "scan", "--wait", "1.5"]) == 1
    assert f"NO ANSWER: no message: subscribed to {TOPIC} but nothing arrived within 1.5 s" \
        in capsys.readouterr().out


def test_scan_of_a_broker_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["--config", config(tmp_path, f"mqtt://127.0.0.1:{port}"), "meters", "scan", "--wait", "1.5"]) == 1
    assert f"NO ANSWER: unavailable: cannot reach broker 127.0.0.1:{port}" in capsys.readouterr().out


def test_scan_with_a_wrong_password_stops_at_once(auth_broker: Broker, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong-pw\n")
    secret.chmod(0o600)
    cfg = config(tmp_path, auth_broker.url, username="hub", password_file=str(secret))
    started = time.monotonic()
    assert main(["--config", cfg, "meters", "scan", "--wait", "60"]) == 1
    # a refused login does not fix itself while the installer waits: the scan says so instead of waiting 60 s
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert f"NO ANSWER: unavailable: broker 127.0.0.1:{auth_broker.port} refused the connection" in out
    assert "retrying" not in out
