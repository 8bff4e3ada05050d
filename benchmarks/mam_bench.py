#!/usr/bin/env python3
"""MAM v0 create/parse speed: SCB's codec against @iota/mam.js 1.0.0-beta.10, same inputs, same machine, same run.

    .venv/bin/python benchmarks/mam_bench.py [--runs 15] [--security 2]

Prints one JSON object: medians in seconds and ratios (mam.js time / SCB time; > 1 means SCB is faster).
"create_cold" clears SCB's leaf cache before each message, which is the work mam.js does on every message
(it rebuilds the current and the next tree); "create_steady" is a publisher's steady state, where message k's
next tree is message k+1's tree and its leaf is computed once. Payloads are checked byte-identical.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mam_client.crypto.trits import ascii_to_trytes  # noqa: E402
from mam_client.mam import create_channel, create_message, parse_message  # noqa: E402
from mam_client.mam import message as message_module  # noqa: E402

SEED = "BENCHMARK9SEED" * 5 + "ABCDEFGHIJK"
MESSAGE = ascii_to_trytes('{"hub":"scb-demo-hub","meter":"pv1","wh":123456,"w":2310,"seq":42}')


def ours(security: int, runs: int) -> dict[str, list[float] | list[str]]:
    cold, steady, parse, payloads = [], [], [], []
    state = create_channel(SEED, "public", security=security)
    for _ in range(runs):
        message_module._leaf.cache_clear()
        message_module._tree.cache_clear()
        t = time.perf_counter()
        created = create_message(state, MESSAGE)
        cold.append(time.perf_counter() - t)
        payloads.append(created.payload)
        t = time.perf_counter()
        parse_message(created.payload, created.root)
        parse.append(time.perf_counter() - t)
    state = create_channel(SEED, "public", security=security)
    create_message(state, MESSAGE)
    for _ in range(runs):
        t = time.perf_counter()
        create_message(state, MESSAGE)
        steady.append(time.perf_counter() - t)
    return {"create_cold": cold, "create_steady": steady, "parse": parse, "payloads": payloads}


def mamjs(security: int, runs: int) -> dict[str, list[float] | list[str]]:
    node = shutil.which("node")
    if not node:
        raise SystemExit("node is needed: the benchmark measures mam.js in the same run")
    proc = subprocess.run([node, str(REPO / "tests/js/mamjs_bench.js")], cwd=REPO, capture_output=True, text=True,
                          input=json.dumps({"seed": SEED, "mode": "public", "security": security,
                                            "message": MESSAGE, "runs": runs}), check=True)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--security", type=int, default=2, choices=(1, 2, 3))
    args = parser.parse_args()
    js = mamjs(args.security, args.runs)
    py = ours(args.security, args.runs)
    med = statistics.median
    result = {
        "benchmark": "mam_v0",
        "security": args.security,
        "runs": args.runs,
        "message_trytes": len(MESSAGE),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "payloads_identical": py["payloads"] == js["payloads"],
        "mamjs_s": {"create": med(js["create_s"]), "parse": med(js["parse_s"])},
        "scb_s": {"create_cold": med(py["create_cold"]), "create_steady": med(py["create_steady"]),
                  "parse": med(py["parse"])},
    }
    result["ratio_mamjs_over_scb"] = {
        "create_cold": round(result["mamjs_s"]["create"] / result["scb_s"]["create_cold"], 1),
        "create_steady": round(result["mamjs_s"]["create"] / result["scb_s"]["create_steady"], 1),
        "parse": round(result["mamjs_s"]["parse"] / result["scb_s"]["parse"], 1),
    }
    result["target_met"] = (result["ratio_mamjs_over_scb"]["create_cold"] >= 10
                            and result["ratio_mamjs_over_scb"]["parse"] >= 5)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
