"""`scb meters scan`: one read per device, values with units, exit 1 and the reason when a device is silent."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main
from tests.energy_manager.modbus.meter_sim import MeterServer, Unit, sdm630_tcp_devices
from tests.energy_manager.modbus.test_tcp import sdm630

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def server() -> Iterator[MeterServer]:
    srv = MeterServer({1: sdm630(1234.5, -1500.0)}).start_tcp()
    yield srv
    srv.stop()


def config(tmp_path: Path, port: int, units: tuple[int, ...] = (1,)) -> str:
    path = tmp_path / "scb.toml"
    path.write_text(f"[hub]\ndata_dir = \"{tmp_path / 'data'}\"\n[energy]\nclock_speed = 1\n{sdm630_tcp_devices(port, units)}")
    return str(path)


def test_scan_prints_each_value_with_its_unit(tmp_path: Path, server: MeterServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, server.port), "meters", "scan"]) == 0
    out = capsys.readouterr().out
    assert "m1 (modbus, 127.0.0.1:" in out and "unit 1): profile sdm630, Eastron SDM630" in out
    assert "import_wh" in out and "1234500.000 Wh" in out and "-1500.000 W" in out and "50.000 Hz" in out


def test_scan_json_and_a_device_that_does_not_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = MeterServer({1: sdm630(1234.5, -1500.0), 2: Unit()}).start_tcp()
    server.silent.add(2)
    server.silence_s = 1.5
    cfg = config(tmp_path, server.port, (1, 2))
    try:
        assert main(["--config", cfg, "meters", "scan", "--json"]) == 1
        result = json.loads(capsys.readouterr().out)
        assert main(["--config", cfg, "meters", "scan", "m1"]) == 0
    finally:
        server.stop()
    by_name = {d["device"]: d for d in result["devices"]}
    assert result["ok"] is False
    assert by_name["m1"]["ok"] is True
    assert by_name["m1"]["values"]["import_wh"] == {"value": 1234500.0, "unit": "Wh"}
    assert by_name["m2"]["ok"] is False and by_name["m2"]["reason"].startswith("timeout: no answer")


def test_scan_of_a_gateway_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--config", config(tmp_path, port), "meters", "scan"]) == 1
    assert "NO ANSWER: unavailable: cannot connect to 127.0.0.1:" in capsys.readouterr().out


def test_scan_of_an_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, 5020), "meters", "scan", "nope"]) == 2
    assert "scb: no device 'nope' in [energy.devices]; configured: m1" in capsys.readouterr().err


def test_scan_of_a_sunspec_meter_shows_its_models_and_common_model(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tests.energy_manager.modbus.test_sunspec import common, meter_203, sunspec_unit

    server = MeterServer({126: sunspec_unit(50000, common(), meter_203())}, ranges=((50000, 300),)).start_tcp()
    path = tmp_path / "scb.toml"
    path.write_text(f"""[hub]
data_dir = "{tmp_path / 'data'}"
[energy]
clock_speed = 1
[energy.devices.grid]
driver = "modbus"
transport = "tcp"
host = "127.0.0.1"
port = {server.port}
unit = 126
profile = "sunspec"
[energy.meters.grid-import]
device = "grid"
circuit = "grid_import"
register = "import_wh"
""")
    try:
        assert main(["--config", str(path), "meters", "scan"]) == 0
        text = capsys.readouterr().out
        assert main(["--config", str(path), "meters", "scan", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)["devices"][0]
    finally:
        server.stop()
    assert "grid (modbus, 127.0.0.1:" in text and "unit 126): profile sunspec, Fronius Smart Meter 63A" in text
    for line in ("  base: 50000", "  models: 1, 203", "  manufacturer: Fronius", "  model: Smart Meter 63A",
                 "  serial: SN-0042"):
        assert line in text.splitlines(), text
    assert result["details"] == {"base": 50000, "models": [1, 203], "manufacturer": "Fronius",
                                 "model": "Smart Meter 63A", "version": "1.2", "serial": "SN-0042"}
    assert result["values"]["import_wh"] == {"value": pytest.approx(1_234_560.0), "unit": "Wh"}
    assert result["values"]["power_w"] == {"value": -1500.0, "unit": "W"}
