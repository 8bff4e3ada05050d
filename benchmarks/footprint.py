#!/usr/bin/env python3
"""Resident memory and disk of the embedded default hub, as a newcomer runs it (issue 16, "Memory").

    .venv/bin/python benchmarks/footprint.py                 # one JSON object
    .venv/bin/python benchmarks/footprint.py --periods 2 --keep /tmp/fp   # keep the data directory

What it does: `scb run` on the embedded defaults (anvil, the tangle node, energy manager, MAM client,
settlement, dashboard, demo households) in a temporary data directory on free ports (benchmarks/local_stack.py);
waits until `--periods` settlement periods are settled (polling the hub database, ceiling `--ceiling-s`); then
reads RSS and PSS of every process of the hub's tree from /proc/PID/smaps_rollup (the supervisor, every child,
and what the children start themselves, such as anvil's binary under its Node launcher when `scb run` falls
back to the launcher; docs/deployment.md has each reduction step's figures), the database files
(with their WAL) and the data directory's size; stops everything with SIGTERM as Ctrl-C does.

Why PSS beside RSS: the Python processes share the interpreter's and the C libraries' pages; RSS counts them once
per process (the sum overstates what the machine holds), PSS divides each shared page among its users (the sum is
what the tree holds). The target (250 MB) is checked against the PSS total, and the RSS total is printed too.

`import_cost`: what each heavy library costs on its own (a fresh interpreter's RSS after `import X` minus before,
and the import's wall time), and each process's entry module with its largest top-level imports by
`python -X importtime`: measured here, so the reduction work knows where the memory goes.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub.forking import ENTRY_MODULES  # noqa: E402
from local_stack import PYTHON, REPO, Stack, dir_bytes, memory_kb, report, stack_env, work_dir  # noqa: E402

TARGET_MB = 250
HEAVY = ("web3", "eth_account", "pymodbus", "paho.mqtt.client", "aiohttp", "sqlalchemy", "alembic", "iota",
         "apscheduler", "requests", "serial")
#: the module each process of the embedded default spends its life in (hub.forking's table, which `scb run`
#: preloads), and the supervisor's own
ENTRIES = {**{name: ENTRY_MODULES[name] for name in ("tangle-node", "energy-manager", "mam-client", "settlement",
                                                    "dashboard", "demo-households")},
           "supervisor (scb run)": "hub.supervisor"}
_PROBE = """
import sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
import hub.cli  # the `scb` command's own start-up, common to every process
base, t = rss(), time.perf_counter()
__import__(sys.argv[1])
print(rss() - base, round((time.perf_counter() - t) * 1000, 1), base)
"""


def probe(module: str) -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-c", _PROBE, module], cwd=REPO, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    delta, ms, base = out.stdout.split()
    return {"rss_kb": int(delta), "import_ms": float(ms), "after_scb_cli_kb": int(base)}


def importtime(module: str, top: int = 8) -> list[dict[str, Any]]:
    """The `top` distributions by import time when importing `module` in a fresh interpreter: the *self* time of
    every module, summed per top-level package (web3's own modules under web3, eth_* under each eth_ package),
    so that each library is charged what its own modules cost, wherever in the tree it was first imported."""
    out = subprocess.run([PYTHON, "-X", "importtime", "-c", f"import {module}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    per_root: dict[str, list[int]] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            entry = per_root.setdefault(m.group(3).split(".")[0], [0, 0])
            entry[0] += int(m.group(1))
            entry[1] += 1
    ranked = sorted(per_root.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"package": k, "self_ms": round(v[0] / 1000, 1), "modules": v[1]} for k, v in ranked]


def import_costs() -> dict[str, Any]:
    return {
        "libraries": {lib: probe(lib) for lib in HEAVY},
        "entries": {name: {"module": mod, **probe(mod), "top_imports": importtime(mod)}
                    for name, mod in ENTRIES.items()},
        "method": "fresh interpreter: import hub.cli, then VmRSS before/after importing the module; "
                  "top_imports from python -X importtime (self time of each module, summed per top-level package)",
    }


def files(data_dir: Path) -> dict[str, int]:
    out = {}
    for p in sorted(data_dir.glob("*.sqlite3*")) + sorted(data_dir.glob("*.json")):
        out[p.name] = p.stat().st_size
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--periods", type=int, default=2, help="settled periods to wait for (default 2)")
    ap.add_argument("--ceiling-s", type=float, default=900.0, help="give up waiting after this (default 900)")
    ap.add_argument("--settle-s", type=float, default=10.0,
                    help="after the periods settled, wait this long before measuring (default 10)")
    ap.add_argument("--no-imports", action="store_true", help="skip the import-cost breakdown")
    ap.add_argument("--keep", type=Path, help="use and keep this directory instead of a temporary one")
    args = ap.parse_args()
    if args.periods < 1 or args.ceiling_s <= 0:
        ap.error("--periods must be >= 1 and --ceiling-s > 0")

    root = work_dir(args.keep, "scb-footprint-")
    data_dir = root / "data"
    stack = Stack(data_dir, stack_env(data_dir))
    result: dict[str, Any] = {"benchmark": "footprint", "target_mb": TARGET_MB, "periods": args.periods}
    try:
        stack.start()
        result["settled_after_s"] = round(stack.wait_until(
            f"{args.periods} settled periods", lambda: stack.settled_periods() >= args.periods, args.ceiling_s), 1)
        time.sleep(args.settle_s)
        procs = []
        for p in stack.processes():
            procs.append({**p, **memory_kb(p["pid"])})
        result["processes"] = procs
        rss = sum(p["rss_kb"] for p in procs)
        pss = sum(p["pss_kb"] for p in procs)
        result["total_rss_mb"] = round(rss / 1024, 1)
        result["total_pss_mb"] = round(pss / 1024, 1)
        result["target_met"] = pss / 1024 <= TARGET_MB
        result["disk"] = {"files_bytes": files(data_dir), "data_dir_bytes": dir_bytes(data_dir),
                          "readings": (stack.query("SELECT count(*) FROM energy_readings") or [(0,)])[0][0],
                          "mam_messages": (stack.query("SELECT count(*) FROM mam_messages") or [(0,)])[0][0]}
    finally:
        result["stop_exit_code"] = stack.stop()
    if not args.no_imports:
        result["import_cost"] = import_costs()
    return report(result, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
