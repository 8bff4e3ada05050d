"""`scb dashboard` beats its heartbeat: from its event loop (serving) and from the holders' collector thread."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scb.loop import read_heartbeats
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_the_dashboard_process_beats_for_both_loops(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    env.update({"SCB_DATA_DIR": str(tmp_path), "SCB_DASHBOARD__PORT": str(free_port()),
                # no chain here: the collector shows the chain as unreachable, but it beats
                "SCB_ETHEREUM__RPC_URL": f"http://127.0.0.1:{free_port()}"})
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "dashboard"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        loops: dict = {}
        last_change, seen = time.monotonic(), 0
        while not {"serving", "holders"} <= set(loops):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            beat = read_heartbeats(tmp_path).get("dashboard")
            loops = beat["loops"] if beat and beat["pid"] == proc.pid else {}
            if len(loops) != seen:
                last_change, seen = time.monotonic(), len(loops)
            assert time.monotonic() - last_change < 60, f"no new loop in the heartbeat for 60 s: {loops}"
            time.sleep(0.2)
        assert loops["serving"]["error"] is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
