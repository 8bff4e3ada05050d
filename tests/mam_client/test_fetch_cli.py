"""`scb mam fetch` as a user runs it: against the real tangle node, then with the node gone (the hub's archive)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from mam_client.models import Channel, OutboxMessage
from mam_client.node.server import serve_in_thread
from mam_client.node.settings import NodeSettings
from mam_client.outbox import enqueue
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from mam_client.transport import PyotaTransport
from scb.config import load_config
from scb.db import open_database, transaction
from tests.conftest import free_port

SCB = str(Path(sys.executable).with_name("scb"))


def test_fetch_all_from_the_node_then_from_the_archive(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SCB_")},
           "SCB_DATA_DIR": str(tmp_path), "SCB_MAM__CHANNELS__READINGS__SECURITY": "1"}
    config = load_config(environ={k: v for k, v in env.items() if k.startswith("SCB_")})
    node = serve_in_thread(NodeSettings(db=tmp_path / "tangle.sqlite3", port=0, mwm=3, pow_threads=1))
    factory = open_database(config)
    publisher = Publisher(factory, mam_settings(config), PyotaTransport(node.url, mwm=3))
    publisher.ensure_channels()
    with transaction(factory) as s:
        for text in ("FIRST", "SECOND", "THIRD"):
            enqueue(s, "readings", text)
    assert publisher.run_once() == 3
    with factory() as s:
        root = s.get(Channel, "readings").first_root
        addresses = [r.address for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    key_file = mam_settings(config).channels["readings"].side_key_file

    def fetch(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCB, "mam", "fetch", root, "--side-key-file", str(key_file), *extra], env=env,
                              capture_output=True, text=True, timeout=120)

    one = fetch("--node", node.url)
    assert one.returncode == 0, one.stderr
    assert [json.loads(x)["message"] for x in one.stdout.splitlines()] == ["FIRST"]
    every = fetch("--node", node.url, "--all")
    lines = [json.loads(x) for x in every.stdout.splitlines()]
    assert [x["message"] for x in lines] == ["FIRST", "SECOND", "THIRD"]
    assert [x["address"] for x in lines] == addresses and {x["source"] for x in lines} == {"node"}

    node.stop()
    dead = f"http://127.0.0.1:{free_port()}"
    archived = fetch("--node", dead, "--all")
    assert archived.returncode == 0, archived.stderr
    assert [json.loads(x)["message"] for x in archived.stdout.splitlines()] == ["FIRST", "SECOND", "THIRD"]
    assert "read from the hub's archive" in archived.stderr and "Traceback" not in archived.stderr
    assert "may continue" in archived.stderr  # the end of the chain could not be confirmed with the node
    nothing = fetch("--node", dead, "--no-archive")
    assert nothing.returncode == 2 and "IOTA node" in nothing.stderr
    wrong = subprocess.run([SCB, "mam", "fetch", root, "--mode", "restricted"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 2 and "side-key-file" in wrong.stderr
