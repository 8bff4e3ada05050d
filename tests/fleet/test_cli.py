"""`scb fleet allow` and `scb fleet serve` as an operator runs them: one-line errors, a heartbeat, SIGTERM ends it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import REPO, free_port


def scb(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(config), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_allow_then_serve(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "fleet.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "data"}"\n[fleet]\nport = {port}\n', encoding="utf-8")
    bad = scb(config, "fleet", "allow", "0x1234")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("scb: ") and "Traceback" not in bad.stderr
    account = "0x" + "ab" * 20
    first, again = scb(config, "fleet", "allow", account), scb(config, "fleet", "allow", "0x" + "AB" * 20)
    assert first.returncode == 0 and "may upload" in first.stdout and "already" not in first.stdout
    assert again.returncode == 0 and "allowed already" in again.stdout
    assert (tmp_path / "data" / "fleet.sqlite3").is_file()  # the embedded default: SQLite under the data dir
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(config), "fleet", "serve"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # a generous ceiling; the loop ends as soon as the server answers
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/hubs", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200 and answer.json() == {"hubs": []}
        beat = tmp_path / "data" / "run" / "heartbeat" / "fleet.json"
        while time.monotonic() < deadline and not beat.exists():
            time.sleep(0.1)
        assert json.loads(beat.read_text())["process"] == "fleet"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0].decode()
    assert "Traceback" not in output


def test_rpc_url_and_contract_go_together(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('[fleet]\nrpc_url = "http://127.0.0.1:8545"\n', encoding="utf-8")
    proc = scb(config, "fleet", "allow", "0x" + "ab" * 20)
    assert proc.returncode == 2 and "fleet.rpc_url and fleet.contract go together" in proc.stderr
