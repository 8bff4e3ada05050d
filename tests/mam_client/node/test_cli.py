"""`scb tangle-node` as a real process: what it stored survives SIGTERM and kill -9, and start-up errors are one
line, not a traceback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from iota import Iota, TryteString

from mam_client.node import transaction as tx
from tests.mam_client.node.helpers import HEADERS, ok, prepared_bundle
from tests.conftest import free_port

MWM = 3



def node_env(data_dir: Path, **settings: object) -> dict[str, str]:
    """Embedded defaults plus these [tangle_node] settings, whatever the caller's own configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env["SCB_DATA_DIR"] = str(data_dir)
    env.update({f"SCB_TANGLE_NODE__{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = node_env(data_dir, port=port, mwm=MWM, pow_threads=1)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "tangle-node"], env=env, cwd=data_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"scb tangle-node exited {proc.returncode}: {proc.stderr.read()}")
        try:
            requests.post(f"http://127.0.0.1:{port}", json={"command": "getNodeInfo"}, headers=HEADERS, timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("scb tangle-node did not start listening")


def send(url: str, message: str) -> str:
    api = Iota(url)
    sent = api.send_trytes([TryteString(t.encode()) for t in prepared_bundle(address="CLI" + "9" * 78,
                                                                             message=message)],
                           depth=3, min_weight_magnitude=MWM)["trytes"]
    return tx.parse(str(sent[0])).hash


def test_restart_keeps_the_tangle(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port)
    first = send(url, "BEFORE9TERM")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "tangle.sqlite3").is_file()  # <data_dir>/tangle.sqlite3 by default

    proc = start(tmp_path, port)
    try:
        assert ok(url, {"command": "checkConsistency", "tails": [first]})["state"] is True
        # the next bundle builds on the one stored before the restart
        gta = ok(url, {"command": "getTransactionsToApprove", "depth": 3})
        assert first in (gta["trunkTransaction"], gta["branchTransaction"])
        second = send(url, "BEFORE9KILL")
    finally:
        proc.kill()  # kill -9: no clean shutdown at all
        proc.communicate(timeout=30)

    proc = start(tmp_path, port)
    try:
        hashes = ok(url, {"command": "findTransactions", "addresses": ["CLI" + "9" * 78]})["hashes"]
        assert hashes == [first, second]
        assert ok(url, {"command": "getInclusionStates", "transactions": hashes})["states"] == [True, True]
        assert ok(url, {"command": "getNodeInfo"})["transactions"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = node_env(tmp_path, port=port)
        proc = subprocess.run([sys.executable, "-m", "hub.cli", "tangle-node"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    env = node_env(tmp_path, mwm=99)
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "tangle-node"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "tangle_node.mwm must be an integer from 0 to 27, not 99" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unusable_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    env = node_env(tmp_path, port=free_port(), db=str(tmp_path / "file" / "tangle.sqlite3"))
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "tangle-node"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "tangle database" in proc.stderr and "cannot be opened" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_node_beats_its_heartbeat_while_serving(tmp_path: Path) -> None:
    """`scb run` restarts a process whose heartbeat goes stale; the node beats from its event loop."""
    from scb.loop import read_heartbeats

    env = node_env(tmp_path, port=free_port())
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "tangle-node"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        beat = None
        while time.monotonic() < deadline and beat is None:
            beat = read_heartbeats(tmp_path).get("tangle-node")
            time.sleep(0.2)
        assert beat is not None, "no heartbeat within 60 s"
        assert beat["pid"] == proc.pid and beat["loops"]["serving"]["error"] is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
