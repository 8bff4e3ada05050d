#!/usr/bin/env python3
"""1,000 simulated meters sampled every 10 s (100 readings/s) on the embedded stack (issue 16, "Scale").

    .venv/bin/python benchmarks/scale.py                 # 10 minutes of measurement, one JSON object
    .venv/bin/python benchmarks/scale.py --minutes 3     # shorter
    .venv/bin/python benchmarks/scale.py --meters 200    # fewer meters

The configuration (written to ./scb.toml of a temporary directory, as an operator would): the demo community's
seven meters plus `meters - 7` more consumption meters on the simulated device, each reading one of the demo
households' registers under a party of its own (`load1`, `load2`, ...). Why not 997 households: each household
is a holder of the demo system on the contract, and a settle transaction loops over its holders, so a thousand
would measure the contract's gas limit rather than the hub; settlement bills the holders' parties only, so the
extra meters are stored, published and anchored (their readings are in the Merkle root) but billed to nobody.
The clock runs 60 times faster as in the demo, so `sample_interval_s = 600` community seconds is 10 real seconds;
the publish window is one sample (600), and a settlement period (one community hour) closes every real minute.

After `--warmup-s` (counted from the first readings stored), the measurement window starts; every
`--poll-s` the backlog is sampled: MAM messages not attached, periods closed but not settled, readings not linked
to a message whose window has closed. At the end: readings stored per second, CPU seconds of every process of the
hub's tree per reading (/proc/PID/stat), and the bytes each process caused to be written to disk per reading
(/proc/PID/io write_bytes, which counts pages when dirtied, so WAL, checkpoints and logs are all in it).

Beside it, in the same run: the readings the hub stored in the window (their canonical bytes, energy_manager's
encoding) inserted into a bare SQLite file, WAL and synchronous=FULL, one transaction per sample batch as the hub
does, into a table of (id, canonical): the least any store of these readings must write; the ratio hub/bare is
the figure against the 3x goal. A second bare file adds the UNIQUE (meter, seq) key the hub also keeps (a
reading is stored once), so the ratio against it says what the hub writes beyond keeping readings unique.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_stack import Stack, cpu_seconds, io_counters, report, stack_env, work_dir  # noqa: E402

SAMPLE_INTERVAL_REAL_S = 10
CLOCK_SPEED = 60
DEMO_HOUSEHOLDS = ("h1", "h2", "h3", "h4")
GOAL_RATIO = 3.0


def config_text(meters: int) -> str:
    """scb.toml of the run: the demo's meters plus `meters - 7` extra consumption meters."""
    interval = SAMPLE_INTERVAL_REAL_S * CLOCK_SPEED
    lines = ["[energy]", f"clock_speed = {CLOCK_SPEED}", f"sample_interval_s = {interval}",
             f"publish_window_s = {interval}", "", "[energy.meters]",
             'pv = {device = "sim", circuit = "generation", register = "pv_wh", power = "pv_w"}']
    for h in DEMO_HOUSEHOLDS:
        lines.append(f'{h} = {{device = "sim", circuit = "consumption", party = "{h}", register = "{h}_wh", '
                     f'power = "{h}_w"}}')
    lines.append('grid-import = {device = "sim", circuit = "grid_import", register = "import_wh", '
                 'power = "import_w"}')
    lines.append('grid-export = {device = "sim", circuit = "grid_export", register = "export_wh", '
                 'power = "export_w"}')
    for i in range(1, meters - 7 + 1):
        h = DEMO_HOUSEHOLDS[i % len(DEMO_HOUSEHOLDS)]
        lines.append(f'load{i} = {{device = "sim", circuit = "consumption", party = "load{i}", '
                     f'register = "{h}_wh", power = "{h}_w"}}')
    return "\n".join(lines) + "\n"


def one(stack: Stack, sql: str) -> int:
    rows = stack.query(sql)
    return int(rows[0][0] or 0) if rows else 0


def backlog(stack: Stack) -> dict[str, Any]:
    return {
        "t_s": round(time.monotonic() - stack.started, 1),
        "readings": one(stack, "SELECT count(*) FROM energy_readings"),
        "mam_not_attached": one(stack, "SELECT count(*) FROM mam_messages WHERE state != 'attached'"),
        "mam_attached": one(stack, "SELECT count(*) FROM mam_messages WHERE state = 'attached'"),
        "periods_unsettled": one(stack, "SELECT count(*) FROM settlement_periods WHERE state != 'settled'"),
        "periods_settled": one(stack, "SELECT count(*) FROM settlement_periods WHERE state = 'settled'"),
        # readings of windows that closed (older than the newest window) still not linked to a message
        "readings_not_linked": one(stack, "SELECT count(*) FROM energy_readings WHERE message_id IS NULL AND "
                                          "window_start_ms < (SELECT max(window_start_ms) FROM energy_readings)"),
        "readings_without_period": one(stack, "SELECT count(*) FROM energy_readings WHERE period IS NULL"),
    }


def counters(stack: Stack) -> dict[int, dict[str, Any]]:
    out = {}
    for p in stack.processes():
        io = io_counters(p["pid"])
        out[p["pid"]] = {"name": p["name"], "cpu_s": cpu_seconds(p["pid"]), "write_bytes": io.get("write_bytes", 0)}
    return out


def bare_insert(path: Path, batches: list[list[tuple[str, int, bytes]]], *, keyed: bool) -> dict[str, Any]:
    """The same canonical readings into a bare SQLite table, one transaction per batch; bytes from /proc/self/io.

    `keyed`: also a UNIQUE (meter, seq) index, as the hub kept until migration 0008 (uq_energy_readings_hub_meter_seq:
    a reading is stored once; the meter heads keep that now). A sample's entries land at one place per meter, so
    this shows what uniqueness by an index alone costs."""
    before = io_counters(os.getpid()).get("write_bytes", 0)
    cpu0 = time.process_time()
    started = time.perf_counter()
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if keyed:
        db.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, meter TEXT NOT NULL, seq INTEGER NOT NULL, "
                   "canonical BLOB NOT NULL, UNIQUE (meter, seq))")
    else:
        db.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, canonical BLOB NOT NULL)")
    n = 0
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        if keyed:
            db.executemany("INSERT INTO readings (meter, seq, canonical) VALUES (?, ?, ?)", batch)
        else:
            db.executemany("INSERT INTO readings (canonical) VALUES (?)", [(c,) for _, _, c in batch])
        db.execute("COMMIT")
        n += len(batch)
    db.close()  # the last connection checkpoints the WAL into the file: part of the cost
    written = io_counters(os.getpid()).get("write_bytes", 0) - before
    return {"readings": n, "batches": len(batches), "write_bytes": written,
            "bytes_per_reading": round(written / n, 1) if n else None,
            "cpu_s_per_reading": round((time.process_time() - cpu0) / n, 7) if n else None,
            "wall_s": round(time.perf_counter() - started, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the measurement window (default 10)")
    ap.add_argument("--meters", type=int, default=1000, help="simulated meters (default 1000, at least 8)")
    ap.add_argument("--warmup-s", type=float, default=30.0,
                    help="after the first readings are stored, wait this long before measuring (default 30)")
    ap.add_argument("--poll-s", type=float, default=30.0, help="backlog sampling interval (default 30)")
    ap.add_argument("--ceiling-s", type=float, default=900.0, help="give up waiting for the first readings")
    ap.add_argument("--keep", type=Path, help="use and keep this directory instead of a temporary one")
    args = ap.parse_args()
    if args.minutes <= 0 or args.meters < 8 or args.poll_s <= 0:
        ap.error("--minutes must be > 0, --meters >= 8, --poll-s > 0")

    root = work_dir(args.keep, "scb-scale-")
    root.mkdir(parents=True, exist_ok=True)
    (root / "scb.toml").write_text(config_text(args.meters))
    data_dir = root / "data"
    stack = Stack(data_dir, stack_env(data_dir))
    target_rate = args.meters / SAMPLE_INTERVAL_REAL_S
    result: dict[str, Any] = {"benchmark": "scale", "meters": args.meters,
                              "sample_interval_s": SAMPLE_INTERVAL_REAL_S, "target_readings_per_s": target_rate,
                              "minutes": args.minutes, "goal_write_ratio": GOAL_RATIO}
    series: list[dict[str, Any]] = []
    try:
        stack.start()
        # not "a settled period": under this load the MAM backlog may hold settlement up, which is what the
        # window must show, so the warm-up only waits for the sampling loop to run
        stack.wait_until("the first readings", lambda: one(stack, "SELECT count(*) FROM energy_readings") > 0,
                         args.ceiling_s)
        time.sleep(args.warmup_s)
        first_id = one(stack, "SELECT max(id) FROM energy_readings")
        start_counters = counters(stack)
        t0 = time.monotonic()
        series.append(backlog(stack))
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(args.poll_s, max(0.0, end - time.monotonic())))
            if not stack.alive():
                raise SystemExit("scb run exited during the measurement; see " + str(stack.log))
            series.append(backlog(stack))
        end_counters = counters(stack)
        elapsed = time.monotonic() - t0
        last_id = one(stack, "SELECT max(id) FROM energy_readings")
        readings = series[-1]["readings"] - series[0]["readings"]
        per_process = []
        cpu = written = 0.0
        for pid, c in end_counters.items():
            s = start_counters.get(pid, {"cpu_s": 0.0, "write_bytes": 0})
            d_cpu, d_w = c["cpu_s"] - s["cpu_s"], c["write_bytes"] - s["write_bytes"]
            cpu += d_cpu
            written += d_w
            per_process.append({"name": c["name"], "pid": pid, "cpu_s": round(d_cpu, 2), "write_bytes": d_w,
                                "restarted_during_window": pid not in start_counters})
        result.update({
            "window_s": round(elapsed, 1), "readings_stored": readings,
            "readings_per_s": round(readings / elapsed, 2),
            "cpu_s_per_reading": round(cpu / readings, 6) if readings else None,
            "write_bytes": int(written), "bytes_per_reading": round(written / readings, 1) if readings else None,
            "per_process": per_process,
            "backlog_first": series[0], "backlog_last": series[-1],
            "backlog_growth": {k: series[-1][k] - series[0][k] for k in
                               ("mam_not_attached", "periods_unsettled", "readings_not_linked")},
            "backlog_series": series,
        })
        batches: dict[int, list[tuple[str, int, bytes]]] = {}
        for ts, meter, seq, canonical in stack.query(
                "SELECT ts_ms, meter, seq, canonical FROM energy_readings WHERE id > ? AND id <= ? ORDER BY id",
                (first_id, last_id)):
            batches.setdefault(int(ts), []).append((str(meter), int(seq), bytes(canonical)))
    finally:
        result["stop_exit_code"] = stack.stop()
    bare = bare_insert(root / "bare.sqlite3", list(batches.values()), keyed=False)
    unique_key = bare_insert(root / "bare-keyed.sqlite3", list(batches.values()), keyed=True)
    result["bare_sqlite"] = bare
    result["bare_sqlite_with_unique_key"] = unique_key
    if bare["bytes_per_reading"] and result.get("bytes_per_reading"):
        result["write_ratio_vs_bare"] = round(result["bytes_per_reading"] / bare["bytes_per_reading"], 2)
        result["write_ratio_vs_bare_with_unique_key"] = round(
            result["bytes_per_reading"] / unique_key["bytes_per_reading"], 2)
        result["write_goal_met"] = result["write_ratio_vs_bare"] <= GOAL_RATIO
    # a backlog "grows" when its last sample is above everything seen in the first half of the window (a queue
    # that fills and drains within each window is no growth)
    half = series[: max(1, len(series) // 2)]
    growing = {k: series[-1][k] > max(s[k] for s in half)
               for k in ("mam_not_attached", "periods_unsettled", "readings_not_linked")} if series else {}
    result["backlog_growing"] = growing
    result["sustained"] = result.get("readings_per_s", 0) >= 0.95 * target_rate and not any(growing.values())
    return report(result, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
