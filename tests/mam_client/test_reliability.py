"""The publisher as a user runs it (`scb mam-client` and `scb tangle-node` processes) under failure.

* kill -9 the publisher at random moments while it publishes 200 messages, restart it each time: every key
  index is on the node exactly once, and both our fetch-all and mam.js's mamFetchAll walk the whole chain;
* stop the node for a while: everything queued is published, in order, with no manual step.

Limits follow progress (`Progress`): a wait fails only when nothing moved for STALL_S, so a busy machine is
slower but does not fail; a publisher that is stuck fails the same.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from mam_client.fetch import fetch_chain
from mam_client.models import ATTACHED, Channel, OutboxMessage
from mam_client.outbox import enqueue
from mam_client.transport import PyotaTransport
from scb.config import load_config
from scb.db import open_database, transaction
from scb.loop import read_heartbeats
from tests.conftest import free_port, run_node

MWM = 3
#: A wait fails after this long without progress (not after a total time: see the module docstring).
STALL_S = 60.0


class Progress:
    """Fails the test when `measure()` has not changed for STALL_S seconds."""

    def __init__(self, what: str, measure: Callable[[], Hashable]) -> None:
        self.what = what
        self.measure = measure
        self.last = measure()
        self.since = time.monotonic()

    def check(self) -> Hashable:
        value = self.measure()
        if value != self.last:
            self.last, self.since = value, time.monotonic()
        assert time.monotonic() - self.since < STALL_S, f"no progress for {STALL_S:.0f} s: {self.what}: {value}"
        return value

    def wait(self, condition: Callable[[], bool], poll_s: float = 0.05) -> None:
        while not condition():
            self.check()
            time.sleep(poll_s)

class Hub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.node_port = free_port()
        self.env = {
            **os.environ,
            "SCB_DATA_DIR": str(root),
            "SCB_TANGLE_NODE__PORT": str(self.node_port),
            "SCB_TANGLE_NODE__MWM": str(MWM),
            "SCB_TANGLE_NODE__POW_THREADS": "1",
            "SCB_IOTA__MWM": str(MWM),
            "SCB_MAM__API_PORT": str(free_port()),
            "SCB_MAM__POLL_INTERVAL_S": "0.2",
            "SCB_MAM__BACKOFF_INITIAL_S": "0.2",
            "SCB_MAM__BACKOFF_MAX_S": "1.0",
            "SCB_MAM__CHANNELS__READINGS__MODE": "public",
            "SCB_MAM__CHANNELS__READINGS__SECURITY": "1",
        }
        self.config = load_config(environ={k: v for k, v in self.env.items() if k.startswith("SCB_")})
        self.url = f"http://127.0.0.1:{self.node_port}"

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{args[0]}.log", "ab")  # noqa: SIM115
        return subprocess.Popen([sys.executable, "-m", "hub.cli", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)

    def wait_node(self) -> None:
        def up() -> bool:
            try:
                requests.post(self.url, json={"command": "getNodeInfo"},
                              headers={"X-IOTA-API-Version": "1"}, timeout=2)
                return True
            except requests.RequestException:
                return False

        Progress("the tangle node to answer", lambda: None).wait(up, poll_s=0.1)

    def log_tail(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def publisher_beating(self, pid: int) -> bool:
        """True once the mam-client `pid` runs its publisher loop (the loop's first heartbeat names the pid)."""
        beat = read_heartbeats(self.root).get("mam-client")
        return bool(beat and beat.get("pid") == pid and "publisher" in beat.get("loops", {}))


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    hub.procs = procs  # type: ignore[attr-defined]
    yield hub
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def counts(factory) -> dict[str, int]:
    with factory() as s:
        return dict(s.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all())


def enqueue_messages(factory, n: int, start: int = 0) -> None:
    with transaction(factory) as s:
        for i in range(start, start + n):
            enqueue(s, "readings", "SCB" + "".join("ABCDEFGHIJ"[int(d)] for d in str(i)))


@pytest.mark.slow
def test_kill_9_while_publishing_200(hub: Hub) -> None:
    node = hub.spawn("tangle-node")
    hub.procs.append(node)  # type: ignore[attr-defined]
    hub.wait_node()
    factory = open_database(hub.config)
    enqueue_messages(factory, 200)
    rng = random.Random(20261121)
    kills = ready = 0

    def attached() -> int:
        return counts(factory).get(ATTACHED, 0)

    progress = Progress("publishing 200 messages while killing the mam-client", lambda: (attached(), ready))
    while attached() < 200:
        client = hub.spawn("mam-client")
        hub.procs.append(client)  # type: ignore[attr-defined]

        def alive() -> bool:
            assert client.poll() is None, f"mam-client exited with {client.returncode}:\n{hub.log_tail('mam-client')}"
            return True

        # the kill moments count from the publisher loop's start, so that a slow start-up (imports, migrations
        # on a busy machine) does not eat the window in which it publishes
        progress.wait(lambda: alive() and hub.publisher_beating(client.pid))
        ready += 1
        before, end, quota = attached(), time.monotonic() + rng.uniform(0.3, 3.0), rng.randint(5, 40)
        # a random moment while it publishes: after a random time, or a random number of attachments on a machine
        # fast enough to publish everything in that time (so that it is killed several times); on a machine too
        # slow to attach anything in that time, after its first attachment (limited by progress), then a little
        progress.wait(lambda: alive() and (attached() >= min(200, before + quota)
                                           or (time.monotonic() >= end and attached() > before)))
        if attached() < 200 and time.monotonic() - end > 0.05:
            time.sleep(rng.uniform(0.0, 0.5))
        if client.poll() is None:
            client.send_signal(signal.SIGKILL)
            kills += 1
        client.wait()
    assert kills >= 3

    with factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        first_root = s.get(Channel, "readings").first_root
    assert [r.key_index for r in rows] == list(range(200))
    transport = PyotaTransport(hub.url, mwm=MWM)
    for row in rows:
        bundles = [b for b in transport.find_bundles(row.address)]
        assert len(bundles) == 1, f"index {row.key_index}: {len(bundles)} bundles on the node"
        assert bundles[0].carries(row.payload)
    ours = [m.message for m in fetch_chain(transport, first_root, "public", None)]
    assert ours == [r.message for r in rows]
    theirs = run_node("mamjs_tangle.js", {"provider": hub.url, "ops": [
        {"op": "fetchAll", "root": first_root, "mode": "public", "limit": 1000}]})["results"][0]
    assert theirs["ok"], theirs
    assert [m["message"] for m in theirs["messages"]] == ours


@pytest.mark.slow
def test_node_outage_then_recovery(hub: Hub) -> None:
    node = hub.spawn("tangle-node")
    hub.procs.append(node)  # type: ignore[attr-defined]
    hub.wait_node()
    factory = open_database(hub.config)
    client = hub.spawn("mam-client")
    hub.procs.append(client)  # type: ignore[attr-defined]
    enqueue_messages(factory, 3)

    def attached() -> int:
        return counts(factory).get(ATTACHED, 0)

    Progress("the first 3 messages", attached).wait(lambda: attached() >= 3, poll_s=0.2)
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=30)
    enqueue_messages(factory, 10, start=3)
    time.sleep(3)  # the publisher retries against a dead node meanwhile
    assert counts(factory).get(ATTACHED, 0) == 3
    with factory() as s:
        waiting = s.scalars(select(OutboxMessage).where(OutboxMessage.state != ATTACHED)
                            .order_by(OutboxMessage.id)).first()
        assert waiting.attempts >= 1 and waiting.last_error
    node = hub.spawn("tangle-node")
    hub.procs.append(node)  # type: ignore[attr-defined]
    Progress("the 13 messages after the outage", lambda: counts(factory)).wait(lambda: attached() >= 13, poll_s=0.2)
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        first_root = s.get(Channel, "readings").first_root
    times = [r.attached_at for r in rows]
    assert times == sorted(times)  # attached in order
    transport = PyotaTransport(hub.url, mwm=MWM)
    assert [m.message for m in fetch_chain(transport, first_root, "public", None)] == [r.message for r in rows]
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 0


def test_one_publisher_per_data_directory(hub: Hub) -> None:
    first = hub.spawn("mam-client")
    hub.procs.append(first)  # type: ignore[attr-defined]
    lock = hub.root / "mam-client.lock"
    Progress("the first mam-client to take the lock", lambda: None).wait(
        lambda: first.poll() is None and lock.exists() and lock.read_text().strip() == str(first.pid), poll_s=0.1)
    assert first.poll() is None, hub.log_tail("mam-client")
    second = subprocess.run([sys.executable, "-m", "hub.cli", "mam-client"], env=hub.env, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2 and "another mam-client is running" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = hub.spawn("mam-client")  # the lock died with the killed process
    hub.procs.append(again)  # type: ignore[attr-defined]
    Progress("the restarted mam-client to take the lock", lambda: None).wait(
        lambda: again.poll() is not None or lock.read_text().strip() == str(again.pid), poll_s=0.1)
    assert again.poll() is None, hub.log_tail("mam-client")
