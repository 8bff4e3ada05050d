#!/usr/bin/env python3
"""`scb verify ADDRESS` on the local stack, for the message of one publish window (issue 16, "Verification").

    .venv/bin/python benchmarks/verify_speed.py            # one JSON object
    .venv/bin/python benchmarks/verify_speed.py --runs 5

What it does: `scb run` on the embedded defaults in a temporary data directory (benchmarks/local_stack.py), waits
until a period is settled, picks the attached message with the most readings (a whole publish window, not the first partial one) among those
whose readings all lie in settled periods, then
runs `scb verify ADDRESS` as a user does, in a fresh process each time:
* `plain`: the command as typed, wall time from exec to exit (interpreter start-up included);
* `instrumented`: the same command with `--rpc` and `--node` pointing at counting proxies in front of anvil and
  the tangle node, which count every JSON-RPC method (batches unpacked) and IOTA command and sum the time each
  request took upstream; the process itself reports how long its imports took (hub.cli and every module the
  verify path imports lazily, imported up front). So the wall time splits into imports, chain (JSON-RPC),
  fetch (the tangle node) and the rest (database reads, hashing, Merkle proofs, output).
The proxies add a little latency; `plain` is the figure against the 1 s target. A last instrumented run under
cProfile lists the functions with the largest cumulative time, and the packages imported lazily during verify
(after the up-front imports), which is where the rest goes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_stack import PYTHON, Stack, report, stack_env, work_dir  # noqa: E402

TARGET_S = 1.0
#: what the verify path imports lazily (hub.verification, settlement.verify and what they pull in), imported
#: up front by the instrumented run so that their cost is counted as imports
VERIFY_IMPORTS = ("hub.cli", "hub.commands", "hub.verification", "hub.verify_records", "settlement.verify",
                  "settlement.chain", "settlement.rpc", "settlement.logscan", "settlement.settings",
                  "mam_client.tangle_reader", "mam_client.fetch", "mam_client.settings", "energy_manager.settings",
                  "scb.sqlite_reader")
#: what the verify path must not import (each costs a large part of the budget): reported if it does
HEAVY = ("web3", "eth_account", "py_ecc", "eth_abi", "iota", "pkg_resources", "sqlalchemy", "requests")
_DRIVER = """
import json, sys, time
t = time.perf_counter()
for m in {modules!r}:
    __import__(m)
imports = time.perf_counter() - t
sys.stderr.write("IMPORTS " + json.dumps(imports) + "\\n")
import hub.cli
before = set(sys.modules)
if {profile!r}:
    import cProfile, io, pstats
    prof = cProfile.Profile()
    code = prof.runcall(hub.cli.main, sys.argv[1:])
    stats = pstats.Stats(prof)
    rows = sorted(((v[3], f"{{k[0].split('/site-packages/')[-1].split('/work/main/')[-1]}}:{{k[1]}}({{k[2]}})")
                   for k, v in stats.stats.items()), reverse=True)[:25]
    sys.stderr.write("PROFILE " + json.dumps([[round(t, 3), f] for t, f in rows]) + "\\n")
else:
    code = hub.cli.main(sys.argv[1:])
late = sorted({{m.split(".")[0] for m in set(sys.modules) - before}})
sys.stderr.write("LATE " + json.dumps(late) + "\\n")
sys.stderr.write("HEAVY " + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
sys.exit(code)
"""


class CountingProxy:
    """A forwarding HTTP proxy that counts requests by method and sums the upstream time."""

    def __init__(self, upstream: str, kind: str) -> None:
        self.upstream, self.kind = upstream, kind
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.upstream_s = 0.0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.count(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type",
                                                                                  "x-iota-api-version")}
                started = time.perf_counter()
                req = urllib.request.Request(proxy.upstream, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                with proxy.lock:
                    proxy.upstream_s += time.perf_counter() - started
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        items = payload if isinstance(payload, list) else [payload]
        with self.lock:
            self.requests += 1
            for item in items:
                key = "method" if self.kind == "json-rpc" else "command"
                self.counts[str(item.get(key) if isinstance(item, dict) else "?")] += 1

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.requests, self.upstream_s = 0, 0.0

    def stop(self) -> None:
        self.server.shutdown()


def pick_address(stack: Stack) -> tuple[str, int] | None:
    rows = stack.query(
        "SELECT m.address, count(r.id) FROM mam_messages m JOIN energy_readings r ON r.message_id = m.id"
        " WHERE m.state = 'attached' GROUP BY m.id"
        " HAVING sum(CASE WHEN r.period IN (SELECT period_id FROM settlement_periods WHERE state = 'settled')"
        " THEN 0 ELSE 1 END) = 0 ORDER BY count(r.id) DESC, m.id LIMIT 1")
    return (str(rows[0][0]), int(rows[0][1])) if rows else None


def run_verify(env: dict[str, str], cwd: Path, argv: list[str], driver: bool,
               profile: bool = False) -> tuple[float, int, float | None, str]:
    driver_code = _DRIVER.format(modules=VERIFY_IMPORTS, profile=profile, heavy=HEAVY)
    cmd = [PYTHON, "-c", driver_code, *argv] if driver else [PYTHON, "-m", "hub.cli", *argv]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    imports = None
    for line in out.stderr.splitlines():
        if line.startswith("IMPORTS "):
            imports = float(line.split()[1])
    return wall, out.returncode, imports, out.stdout + out.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each kind; the median is reported (default 3)")
    ap.add_argument("--ceiling-s", type=float, default=900.0, help="give up waiting for a settled period after this")
    ap.add_argument("--keep", type=Path, help="use and keep this directory instead of a temporary one")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    root = work_dir(args.keep, "scb-verify-")
    data_dir = root / "data"
    env = stack_env(data_dir)
    stack = Stack(data_dir, env)
    result: dict[str, Any] = {"benchmark": "verify_speed", "target_s": TARGET_S}
    proxies: list[CountingProxy] = []
    try:
        stack.start()
        picked: list[tuple[str, int]] = []

        def ready() -> bool:
            found = pick_address(stack)
            if found:
                picked.append(found)
            return bool(found)

        stack.wait_until("a message whose readings are all settled", ready, args.ceiling_s)
        address, readings = picked[-1]
        result.update({"address": address, "readings_in_message": readings})
        chain = CountingProxy(f"http://127.0.0.1:{env['SCB_ETHEREUM__LOCAL_PORT']}", "json-rpc")
        node = CountingProxy(f"http://127.0.0.1:{env['SCB_TANGLE_NODE__PORT']}", "iota")
        proxies += [chain, node]
        plain, instrumented = [], []
        for _ in range(args.runs):
            wall, rc, _, text = run_verify(env, root, ["verify", address], driver=False)
            plain.append({"wall_s": round(wall, 3), "exit": rc})
            if rc != 0:
                result["plain_output"] = text[-2000:]
        for _ in range(args.runs):
            chain.reset()
            node.reset()
            wall, rc, imports, text = run_verify(
                env, root, ["verify", address, "--rpc", chain.url, "--node", node.url], driver=True)
            imports = imports or 0.0
            instrumented.append({
                "wall_s": round(wall, 3), "exit": rc, "imports_s": round(imports, 3),
                "chain_s": round(chain.upstream_s, 3), "fetch_s": round(node.upstream_s, 3),
                "rest_s": round(wall - imports - chain.upstream_s - node.upstream_s, 3),
                "json_rpc_requests": chain.requests, "json_rpc_calls": dict(chain.counts),
                "eth_call": chain.counts.get("eth_call", 0),
                "node_requests": node.requests, "node_commands": dict(node.counts)})
            if rc != 0:
                result["instrumented_output"] = text[-2000:]
        # one more run under cProfile: what the time outside imports, chain and node is spent on
        _, _, _, text = run_verify(env, root, ["verify", address, "--rpc", chain.url, "--node", node.url],
                                   driver=True, profile=True)
        for line in text.splitlines():
            if line.startswith("PROFILE "):
                result["profile_top_cumulative_s"] = json.loads(line[len("PROFILE "):])
            if line.startswith("LATE "):
                result["imported_during_verify"] = json.loads(line[len("LATE "):])
            if line.startswith("HEAVY "):
                result["heavy_modules_imported"] = json.loads(line[len("HEAVY "):])
        median = statistics.median(r["wall_s"] for r in plain)
        result.update({"plain_runs": plain, "instrumented_runs": instrumented, "median_wall_s": median,
                       "target_met": median <= TARGET_S and all(r["exit"] == 0 for r in plain)})
        split = {k: statistics.median(r[k] for r in instrumented)
                 for k in ("imports_s", "chain_s", "fetch_s", "rest_s")}
        result["median_split_s"] = split
        result["dominant"] = max(split, key=lambda k: split[k])
    finally:
        for p in proxies:
            p.stop()
        result["stop_exit_code"] = stack.stop()
    return report(result, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
