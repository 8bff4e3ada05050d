#!/usr/bin/env python3
"""Months on an SD card: 30 simulated days of the embedded default hub at a high clock speed (issue 16).

    .venv/bin/python benchmarks/month.py                      # 30 community days (~40 real minutes), one JSON object
    .venv/bin/python benchmarks/month.py --days 2 --poll-s 10 # a short run
    .venv/bin/python benchmarks/month.py --series-out /tmp/month-series.json   # the full series beside the JSON

What runs: `scb run` on the embedded default (anvil, the project's tangle node, energy manager, MAM client,
settlement, dashboard, demo households; benchmarks/local_stack.py) with a ./scb.toml that only changes time:
`clock_speed` (default 1200: a community day is 72 real seconds), `sample_interval_s` 600 (a sample of the seven
demo meters every half real second), `publish_window_s` 3600 (a MAM message per community hour, every 3 real
seconds), `period_s` 86400 (a settlement period per community day, as in production), and the tangle node's
`prune_after_s` set to one community day in real seconds. Why that last one: it is a real-time setting (a day by
default), so at 1200x it would not prune once in the run; scaled like the clock, the node keeps one community day
of transactions, as the default does on a real hub, and the run shows whether that stays bounded.

Every `--poll-s` real seconds it records: PSS, RSS and private dirty memory of every process of the hub's tree (by
`scb run` name, summed; /proc/PID/smaps_rollup), the hub database and the tangle node's database (each file and its
WAL apart), anvil's state file (anvil writes it on exit only, so it is read after the stop), the logs and the data
directory's size, readings stored, MAM messages attached, transactions the node keeps (plus its tips, tip candidates
and solid entry points), periods settled, and community time (from the energy manager's clock anchor in the hub
database). At the end: each table's and index's bytes (SQLite's dbstat) and SQLite's plan for getTips' query.

Summary: the memory slope (MB of total PSS per community day, least squares over the second half, beside the first
half's, which holds the start-up; and of private dirty memory, each process's own pages, which other processes
mapping the same libraries do not move as they move PSS), the hub database's bytes against readings (fit bytes = a +
b * readings over the run, the residual, and the slope of each half: linear if they agree), the node's transactions
and file size over the second half (bounded when they stop growing), and every period's settlement lag (real seconds
from its close, end + lateness on the community clock, to `settled_at`). What this run cannot show: anything that
grows with *real* time (a loop's log line every few real seconds, say) is 1200 times smaller here than in a real
month; the logs' bytes are in the series so that such a line shows against the community days' share. The machine
may be shared: the figures are as noisy as its load.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_stack import Stack, dir_bytes, memory_kb, report, ro_query, stack_env, work_dir  # noqa: E402

DAY_S = 86_400
SAMPLE_INTERVAL_S = 600
PUBLISH_WINDOW_S = 3600
LATENESS_S = 300  # [settlement] lateness_s's default, written out so that the lag below uses the same figure


def config_text(clock_speed: float, prune_after_s: float) -> str:
    return "\n".join([
        "[energy]", f"clock_speed = {clock_speed}", f"sample_interval_s = {SAMPLE_INTERVAL_S}",
        f"publish_window_s = {PUBLISH_WINDOW_S}", "",
        "[settlement]", f"period_s = {DAY_S}", f"lateness_s = {LATENESS_S}", "",
        "[tangle_node]", f"prune_after_s = {prune_after_s}", "prune_interval_s = 10.0", "",
    ])


def one(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0] or 0) if rows else 0


def file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def wal_bytes(path: Path) -> int:
    """A SQLite file's WAL. Reported apart from the file: SQLite keeps the WAL at its high-water mark after each
    checkpoint (about 4 MB at the default 1000-page autocheckpoint), so it is a bounded constant beside a file
    that grows, and would blur the fit of the file against readings."""
    return file_bytes(path.with_name(path.name + "-wal"))


def table_bytes(db: Path, top: int = 12) -> dict[str, int]:
    """Bytes of each table and index of a SQLite file (the dbstat virtual table), largest first."""
    return {str(name): int(size) for name, size in ro_query(
        db, "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT ?", (top,))}


def clock_anchor(stack: Stack) -> dict[str, float] | None:
    rows = stack.query("SELECT value_json FROM energy_state WHERE key='clock'")
    try:
        anchor = json.loads(rows[0][0]) if rows else None
        return {k: float(anchor[k]) for k in ("community_ms", "wall_ms", "speed")}
    except (TypeError, ValueError, KeyError):
        return None


def sample(stack: Stack, t0_community_s: float | None) -> dict[str, Any]:
    data = stack.data_dir
    node_db = data / "tangle.sqlite3"
    memory: dict[str, dict[str, int]] = {}
    for p in stack.processes():
        m = memory_kb(p["pid"])
        row = memory.setdefault(p["name"], {"rss_kb": 0, "pss_kb": 0, "private_dirty_kb": 0})
        for key in row:
            row[key] += m[key]
    anchor = clock_anchor(stack)
    now_s = None
    if anchor is not None:
        now_s = (anchor["community_ms"] + anchor["speed"] * max(0.0, time.time() * 1000 - anchor["wall_ms"])) / 1000
    return {
        "t_s": round(time.monotonic() - stack.started, 1),
        "community_day": round((now_s - t0_community_s) / DAY_S, 3) if now_s and t0_community_s else None,
        "community_s": now_s,
        "pss_mb": round(sum(m["pss_kb"] for m in memory.values()) / 1024, 1),
        "rss_mb": round(sum(m["rss_kb"] for m in memory.values()) / 1024, 1),
        "private_dirty_mb": round(sum(m["private_dirty_kb"] for m in memory.values()) / 1024, 1),
        "processes_pss_kb": {k: v["pss_kb"] for k, v in memory.items()},
        "processes_rss_kb": {k: v["rss_kb"] for k, v in memory.items()},
        "processes_private_dirty_kb": {k: v["private_dirty_kb"] for k, v in memory.items()},
        "hub_db_bytes": file_bytes(data / "scb.sqlite3"),
        "hub_wal_bytes": wal_bytes(data / "scb.sqlite3"),
        "node_db_bytes": file_bytes(node_db),
        "node_wal_bytes": wal_bytes(node_db),
        "anvil_state_bytes": file_bytes(data / "anvil-state.json"),
        "logs_bytes": dir_bytes(data / "logs"),
        "data_dir_bytes": dir_bytes(data),
        "readings": one(stack.query("SELECT count(*) FROM energy_readings")),
        "messages_attached": one(stack.query("SELECT count(*) FROM mam_messages WHERE state='attached'")),
        "messages_not_attached": one(stack.query("SELECT count(*) FROM mam_messages WHERE state!='attached'")),
        "node_transactions": one(ro_query(node_db, "SELECT count(*) FROM transactions")),
        "node_tips": one(ro_query(node_db, "SELECT count(*) FROM tips")),
        "node_tip_candidates": one(ro_query(node_db, "SELECT count(*) FROM tip_candidates")),
        "node_solid_entry_points": one(ro_query(node_db, "SELECT count(*) FROM solid_entry_points")),
        "periods_settled": one(stack.query("SELECT count(*) FROM settlement_periods WHERE state='settled'")),
        "periods_open": one(stack.query("SELECT count(*) FROM settlement_periods WHERE state!='settled'")),
    }


def fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least squares y = a + b x: a, b, the RMS and largest residual (None for fewer than 3 points)."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    res = [y - (a + b * x) for x, y in zip(xs, ys)]
    return {"a": a, "b": b, "rms_residual": (sum(r * r for r in res) / n) ** 0.5,
            "max_abs_residual": max(abs(r) for r in res), "points": n}


def rounded(d: dict[str, float] | None, digits: int = 3) -> dict[str, float] | None:
    return None if d is None else {k: round(v, digits) for k, v in d.items()}


def settlement_lags(stack: Stack, anchor: dict[str, float] | None) -> list[dict[str, Any]]:
    """Each period: real seconds from its close (end + lateness on the community clock) to settled_at."""
    out = []
    for period_id, end_s, state, settled_at in stack.query(
            "SELECT period_id, end_s, state, settled_at FROM settlement_periods ORDER BY period_id"):
        row: dict[str, Any] = {"period": int(period_id), "state": state}
        if settled_at and anchor is not None:
            closed_community_ms = (end_s + LATENESS_S) * 1000
            closed_wall_ms = anchor["wall_ms"] + (closed_community_ms - anchor["community_ms"]) / anchor["speed"]
            settled = datetime.fromisoformat(str(settled_at))
            if settled.tzinfo is None:
                settled = settled.replace(tzinfo=timezone.utc)
            row["lag_s"] = round(settled.timestamp() - closed_wall_ms / 1000, 1)
        out.append(row)
    return out


def halves(series: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The slope of `key` per community day over each half of the run (second half: where the trend shows)."""
    pts = [s for s in series if s["community_day"] is not None]
    mid = len(pts) // 2
    out = {}
    for name, part in (("first_half", pts[:mid]), ("second_half", pts[mid:])):
        f = fit([s["community_day"] for s in part], [float(s[key]) for s in part])
        out[f"{name}_per_day"] = None if f is None else round(f["b"], 3)
    return out


def summarize(series: list[dict[str, Any]], lags: list[dict[str, Any]], days: float) -> dict[str, Any]:
    pts = [s for s in series if s["community_day"] is not None and s["readings"] > 0]
    second = pts[len(pts) // 2:]
    mem = fit([s["community_day"] for s in second], [s["pss_mb"] for s in second])
    first = pts[:len(pts) // 2]
    mem_first = fit([s["community_day"] for s in first], [s["pss_mb"] for s in first])
    dirty = fit([s["community_day"] for s in second], [s["private_dirty_mb"] for s in second])
    per_process: dict[str, dict[str, float | None]] = {}
    for name in (second[-1]["processes_pss_kb"] if second else {}):
        slopes: dict[str, float | None] = {}
        for key in ("processes_pss_kb", "processes_private_dirty_kb"):
            f = fit([s["community_day"] for s in second], [s[key].get(name, 0) / 1024 for s in second])
            slopes[key.split("_", 1)[1].replace("_kb", "_mb_per_day")] = None if f is None else round(f["b"], 3)
        per_process[name] = slopes
    db = fit([float(s["readings"]) for s in pts], [float(s["hub_db_bytes"]) for s in pts])
    mid = len(pts) // 2
    db_halves = [fit([float(s["readings"]) for s in part], [float(s["hub_db_bytes"]) for s in part])
                 for part in (pts[:mid], pts[mid:])]
    last = pts[-1] if pts else {}
    # every process is up and past its first period by then: the start-up is not counted as growth
    day1 = next((s for s in pts if s["community_day"] >= 1), last)
    settled_lags = [r["lag_s"] for r in lags if "lag_s" in r]
    return {
        "community_days_run": round(last.get("community_day") or 0, 2), "community_days_asked": days,
        "memory": {
            "pss_mb_at_day_1": day1.get("pss_mb"), "pss_mb_last": last.get("pss_mb"),
            "pss_mb_max": max((s["pss_mb"] for s in pts), default=None),
            "rss_mb_last": last.get("rss_mb"),
            "private_dirty_mb_at_day_1": day1.get("private_dirty_mb"),
            "private_dirty_mb_last": last.get("private_dirty_mb"),
            "pss_slope_mb_per_day_first_half": None if mem_first is None else round(mem_first["b"], 3),
            "pss_slope_mb_per_day_second_half": None if mem is None else round(mem["b"], 3),
            "pss_fit_rms_residual_mb": None if mem is None else round(mem["rms_residual"], 2),
            "private_dirty_slope_mb_per_day_second_half": None if dirty is None else round(dirty["b"], 3),
            "slopes_per_process_second_half": per_process,
        },
        "hub_database": {
            "bytes_last": last.get("hub_db_bytes"), "readings_last": last.get("readings"),
            "bytes_per_reading_overall": round(last["hub_db_bytes"] / last["readings"], 1) if last else None,
            "fit_bytes_eq_a_plus_b_readings": rounded(db, 1),
            "rms_residual_pct_of_last": round(100 * db["rms_residual"] / last["hub_db_bytes"], 2) if db else None,
            "b_first_half": None if db_halves[0] is None else round(db_halves[0]["b"], 1),
            "b_second_half": None if db_halves[1] is None else round(db_halves[1]["b"], 1),
            "wal_bytes_max": max((s["hub_wal_bytes"] for s in pts), default=None),
            "messages_attached_last": last.get("messages_attached"),
        },
        "tangle_node": {
            "transactions_max": max((s["node_transactions"] for s in pts), default=None),
            "transactions_last": last.get("node_transactions"),
            "transactions_slope": halves(pts, "node_transactions"),
            "db_bytes_max": max((s["node_db_bytes"] for s in pts), default=None),
            "db_bytes_last": last.get("node_db_bytes"),
            "db_bytes_slope": halves(pts, "node_db_bytes"),
            "wal_bytes_max": max((s["node_wal_bytes"] for s in pts), default=None),
            "tips_max": max((s["node_tips"] for s in pts), default=None),
            "tip_candidates_max": max((s["node_tip_candidates"] for s in pts), default=None),
            "solid_entry_points_last": last.get("node_solid_entry_points"),
        },
        "settlement": {
            "periods_settled": last.get("periods_settled"), "periods_open_last": last.get("periods_open"),
            "lag_s_max": max(settled_lags, default=None),
            "lag_s_median": sorted(settled_lags)[len(settled_lags) // 2] if settled_lags else None,
            "lag_s_last": settled_lags[-1] if settled_lags else None,
        },
        "data_dir_bytes_last": last.get("data_dir_bytes"),
        "logs_bytes_last": last.get("logs_bytes"),
        "logs_bytes_slope": halves(pts, "logs_bytes"),
    }


def thin(series: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    """At most `points` evenly spaced samples (first and last kept), without the per-process breakdown."""
    step = max(1, -(-len(series) // points))
    picked = series[::step] + ([series[-1]] if (len(series) - 1) % step else [])
    keep = ("t_s", "community_day", "pss_mb", "rss_mb", "private_dirty_mb", "hub_db_bytes", "hub_wal_bytes",
            "node_db_bytes", "node_wal_bytes", "logs_bytes", "data_dir_bytes",
            "readings", "messages_attached", "messages_not_attached", "node_transactions", "periods_settled")
    return [{k: s[k] for k in keep} for s in picked]


def explain_tips(node_db: Path) -> list[str]:
    """SQLite's plan for getTips' query (mam_client.node.store.Store.TIPS_SQL): a scan of `tips` by its key only."""
    return [str(r[-1]) for r in ro_query(node_db, "EXPLAIN QUERY PLAN SELECT hash FROM tips ORDER BY seq DESC LIMIT 5")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=30.0, help="community days to run (default 30)")
    ap.add_argument("--clock-speed", type=float, default=1200.0, help="community seconds per real second")
    ap.add_argument("--poll-s", type=float, default=20.0, help="real seconds between samples (default 20)")
    ap.add_argument("--points", type=int, default=60, help="samples kept in the printed series (default 60)")
    ap.add_argument("--ceiling-s", type=float, default=600.0, help="give up waiting for the first readings")
    ap.add_argument("--series-out", type=Path, help="also write the full series (with per-process memory) here")
    ap.add_argument("--keep", type=Path, help="use and keep this directory instead of a temporary one")
    args = ap.parse_args()
    if args.days <= 0 or args.clock_speed <= 0 or args.poll_s <= 0:
        ap.error("--days, --clock-speed and --poll-s must be > 0")

    prune_after_s = round(DAY_S / args.clock_speed, 1)
    root = work_dir(args.keep, "scb-month-")
    root.mkdir(parents=True, exist_ok=True)
    (root / "scb.toml").write_text(config_text(args.clock_speed, prune_after_s))
    data_dir = root / "data"
    stack = Stack(data_dir, stack_env(data_dir))
    result: dict[str, Any] = {
        "benchmark": "month", "clock_speed": args.clock_speed, "sample_interval_s": SAMPLE_INTERVAL_S,
        "publish_window_s": PUBLISH_WINDOW_S, "period_s": DAY_S, "prune_after_s_real": prune_after_s,
        "poll_s": args.poll_s, "meters": 7}
    series: list[dict[str, Any]] = []
    anchor = None
    try:
        stack.start()
        stack.wait_until("the first readings", lambda: one(stack.query("SELECT count(*) FROM energy_readings")) > 0,
                         args.ceiling_s)
        anchor = clock_anchor(stack)
        first = stack.query("SELECT min(ts_ms) FROM energy_readings")
        t0 = first[0][0] / 1000 if first and first[0][0] else None
        result["started_after_s"] = round(time.monotonic() - stack.started, 1)
        while True:
            if not stack.alive():
                raise SystemExit(f"scb run exited during the run; see {stack.log}")
            s = sample(stack, t0)
            series.append(s)
            print(json.dumps({k: s[k] for k in ("t_s", "community_day", "pss_mb", "readings", "messages_attached",
                                                "node_transactions", "periods_settled")}), file=sys.stderr)
            if s["community_day"] is not None and s["community_day"] >= args.days:
                break
            time.sleep(args.poll_s)
        anchor = clock_anchor(stack) or anchor
        lags = settlement_lags(stack, anchor)
        result["real_s"] = round(time.monotonic() - stack.started, 1)
    finally:
        result["stop_exit_code"] = stack.stop()
    result["anvil_state_bytes_after_stop"] = file_bytes(data_dir / "anvil-state.json")
    result["tips_query_plan"] = explain_tips(data_dir / "tangle.sqlite3")
    result["hub_table_bytes"] = table_bytes(data_dir / "scb.sqlite3")
    result["node_table_bytes"] = table_bytes(data_dir / "tangle.sqlite3")
    result["summary"] = summarize(series, lags, args.days)
    result["periods"] = lags
    result["series"] = thin(series, args.points)
    if args.series_out:
        args.series_out.write_text(json.dumps(series))
    return report(result, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
