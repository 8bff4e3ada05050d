#!/usr/bin/env python3
"""Fleet ingest speed: simulated hubs uploading signed batches of readings concurrently into a fleet on PostgreSQL,
beside a plain row-by-row SQLAlchemy insert of the same readings into the same table, in the same run.

    .venv/bin/python benchmarks/fleet_ingest.py [--hubs 4] [--batches 10] [--batch-size 1000] [--database-url URL]

Without `--database-url`, a throw-away PostgreSQL is started from Debian's `postgresql` package (the test suite's
tests/services/postgres.py). The fleet runs as its own process (`scb fleet serve`, as in production), so that the
clients' work does not share its interpreter; the hubs are threads of this process, each with one batch in flight
(as the uploader sends), and their batches are built and signed before the clock starts (signing is the hubs'
work, on their machines). Both processes share this machine's cores.

Printed as one JSON object:
* `fleet.readings_per_s`: readings stored / wall time from the first upload to the last answer; every reading is
  checked (canonical form, keccak256 digest), every batch's EIP-191 signature recovered, everything inserted in one
  transaction per batch with ON CONFLICT DO NOTHING;
* `fleet.batch_latency_ms`: p50 / p99 / max of one upload (request to answer);
* `row_by_row.readings_per_s`: the same readings inserted one INSERT per row through SQLAlchemy (a transaction per
  batch of the same size), straight into the database, no HTTP, no checks;
* `ratio` = fleet / row_by_row (> 1: the fleet, with its checks and HTTP, is faster than a naive insert);
* `goal_readings_per_s`: 5000 (issue 14: on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from energy_manager.reading import Reading, encode_json, reading_digest  # noqa: E402
from fleet.auth import allow  # noqa: E402
from fleet.db import open_fleet_database  # noqa: E402
from fleet.models import FleetHub, FleetReading  # noqa: E402
from hub.fleet import protocol  # noqa: E402
from tests.conftest import free_port  # noqa: E402 - the test suite's, as tests.services.postgres below

GOAL = 5000
START_MS = 1_893_456_000_000


def make_readings(hub: str, count: int) -> list[dict[str, Any]]:
    """`count` valid readings of 10 meters of `hub`, one a minute each, as upload items."""
    items = []
    for i in range(count):
        meter = i % 10
        seq = i // 10 + 1
        reading = Reading(hub=hub, meter=f"m{meter}", party=f"h{meter}", circuit="consumption",
                          ts_ms=START_MS + seq * 60_000 + meter, register_wh=seq * 17, power_w=1000 + meter,
                          seq=seq, salt=secrets.token_hex(16))
        canonical = encode_json(reading.as_dict())
        items.append({"kind": "reading", "id": i + 1, "canonical": canonical.decode(),
                      "digest": reading_digest(canonical).hex(), "delta_wh": 17, "flags": "", "message_id": None,
                      "address": None})
    return items


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # a generous ceiling on a shared machine; ends as soon as it answers
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"scb fleet serve exited with {proc.returncode}")
        try:
            requests.get(url + "/api/v1/hubs", timeout=5)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("the fleet did not start")


def run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    from eth_account import Account

    accounts = [Account.create() for _ in range(args.hubs)]
    engine, factory = open_fleet_database(database_url)
    for account in accounts:
        allow(factory, account.address)
    # the hubs' batches, built and signed before the clock starts
    plans: list[list[bytes]] = []
    all_items: list[list[dict[str, Any]]] = []
    for h, account in enumerate(accounts):
        items = make_readings(f"bench-hub-{h}", args.batches * args.batch_size)
        all_items.append(items)
        bodies = []
        for b in range(args.batches):
            chunk = items[b * args.batch_size:(b + 1) * args.batch_size]
            batch = protocol.make_batch(f"bench-hub-{h}", account.address, b + 1, START_MS, chunk, None)
            bodies.append(json.dumps(protocol.sign(batch, account)).encode())
        plans.append(bodies)

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="scb-fleet-bench-") as tmp:
        toml = Path(tmp) / "fleet.toml"
        toml.write_text(f'[hub]\ndata_dir = "{tmp}"\n[fleet]\nport = {port}\ndatabase_url = "{database_url}"\n',
                        encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--config", str(toml), "fleet", "serve"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "SCB_LOG_LEVEL": "WARNING"})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, proc)
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()

            def hub_thread(bodies: list[bytes]) -> None:
                session = requests.Session()
                for body in bodies:
                    t0 = time.perf_counter()
                    answer = session.post(url + "/api/v1/upload", data=body, timeout=300,
                                          headers={"Content-Type": "application/json"})
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)
                        if answer.status_code != 200:
                            failures.append(f"{answer.status_code}: {answer.text[:200]}")

            threads = [threading.Thread(target=hub_thread, args=(bodies,)) for bodies in plans]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            fleet_s = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    if failures:
        raise SystemExit(f"{len(failures)} uploads failed, first: {failures[0]}")
    with factory() as session:
        stored = session.scalar(select(FleetReading.id).order_by(FleetReading.id.desc()).limit(1))
    total = args.hubs * args.batches * args.batch_size

    # the reference: the same readings, one INSERT per row, a transaction per batch, under a hub row of its own
    with factory() as session, session.begin():
        session.add(FleetHub(account="0x" + "00" * 19 + "01", name="row-by-row", last_batch_seq=0))
    with factory() as session:
        hub_ref = session.scalar(select(FleetHub.id).where(FleetHub.name == "row-by-row"))
    from energy_manager.reading import parse_canonical

    rows = []
    for items in all_items:
        for item in items:
            r = parse_canonical(item["canonical"].encode())
            rows.append({"hub_ref": hub_ref, "hub_reading_id": item["id"], "digest": item["digest"],
                         "canonical": item["canonical"].encode(), "meter": r.meter, "party": r.party,
                         "circuit": r.circuit, "seq": r.seq, "ts_ms": r.ts_ms, "register_wh": r.register_wh,
                         "power_w": r.power_w, "delta_wh": item["delta_wh"], "flags": "", "hub_message_id": None,
                         "address": None})
    started = time.perf_counter()
    for b in range(0, len(rows), args.batch_size):
        with factory() as session, session.begin():
            for row in rows[b:b + args.batch_size]:
                session.execute(insert(FleetReading).values(**row))
    plain_s = time.perf_counter() - started
    engine.dispose()
    fleet_rate = total / fleet_s
    plain_rate = total / plain_s
    return {
        "benchmark": "fleet_ingest", "database": "postgresql", "cores": os.cpu_count(), "hubs": args.hubs,
        "batches_per_hub": args.batches, "batch_size": args.batch_size, "readings": total,
        "fleet": {"seconds": round(fleet_s, 3), "readings_per_s": round(fleet_rate),
                  "batch_latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 1),
                                       "p99": round(percentile(latencies, 0.99) * 1000, 1),
                                       "max": round(max(latencies) * 1000, 1)},
                  "newest_row_id": stored},
        "row_by_row": {"seconds": round(plain_s, 3), "readings_per_s": round(plain_rate)},
        "ratio": round(fleet_rate / plain_rate, 2),
        "goal_readings_per_s": GOAL, "goal_met": fleet_rate >= GOAL,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=10, help="batches per hub")
    parser.add_argument("--batch-size", type=int, default=1000, help="readings per batch")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: start a throw-away one)")
    args = parser.parse_args()
    if args.database_url:
        result = run(args, args.database_url)
    else:
        from tests.services.postgres import find_bin_dir, shared_server

        if find_bin_dir() is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), or give --database-url")
        server = shared_server()
        result = run(args, server.create_database())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
