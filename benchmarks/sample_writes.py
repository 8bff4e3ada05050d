#!/usr/bin/env python3
"""Where the bytes of a sample's transaction go: the hub's reading tables replayed offline, index by index.

    .venv/bin/python benchmarks/sample_writes.py                       # 1,000 meters, 30 + 60 samples
    .venv/bin/python benchmarks/sample_writes.py --meters 200 --samples 30

Why beside benchmarks/scale.py: the running hub's /proc/PID/io says which process wrote, not which table or index
made it write (and a WAL checkpoint is paid by whichever connection commits when the WAL is full). Here one process
replays what the energy manager's `store()` does for each sample - insert one reading per meter, move each
meter's head (`energy_meter_heads`), enqueue the previous window's MAM messages and link its readings to them
(`UPDATE ... SET message_id`), one transaction, WAL,
synchronous=FULL and the WAL checkpoint interval as the hub - into the hub's own tables (`create_all` of the models
at this checkout), and then again with one index or step left out, so the difference is what that index or step
costs. `--warmup` samples first: an index costs a page per reading only once it is larger than one sample's entries,
as on a hub that has run for a while. Figures are bytes written per reading from /proc/self/io (pages dirtied, WAL
and checkpoints).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_stack import add_savings, io_counters, report  # noqa: E402

#: the MAM messages of a window: about 14 of ~31,000 trytes per 1,000 readings (energy.max_message_bytes 16000)
READINGS_PER_MESSAGE = 70


def stored_message(readings: int = READINGS_PER_MESSAGE) -> bytes:
    """A message body as the outbox stores it (mam_client.stored_trytes): JSON readings of the canonical form's
    fields with random salts, in trytes, deflated - so that it deflates as much as a real one, no more."""
    from mam_client.crypto.trits import ascii_to_trytes
    from mam_client.stored_trytes import pack

    body = [{"circuit": "consumption", "hub": "scb-demo-hub", "meter": f"load{m}", "party": f"load{m}",
             "power_w": 200 + m, "register_wh": 1_000_000 + 37 * m, "salt": secrets.token_hex(16), "schema": 1,
             "seq": 1000 + m, "ts_ms": 1_764_000_000_000 + m} for m in range(readings)]
    return pack(ascii_to_trytes(json.dumps({"readings": body}, separators=(",", ":"))))


#: (name, what is left out): the "heads" or "link" step, or the hub's WAL checkpoint interval
#: (scb.wal.WAL_AUTOCHECKPOINT_PAGES; then SQLite's default); or, with "+", what is added back of what a
#: migration dropped, so its saving stays measured: the UNIQUE index of digests (0007), the UNIQUE (hub, meter,
#: seq) and party indexes instead of the meter heads (0008)
VARIANTS: list[tuple[str, str | None]] = [
    ("hub", None),
    ("with the UNIQUE digest index (before migration 0007)", "+digest"),
    ("with the UNIQUE (hub, meter, seq) and party indexes instead of meter heads (before migration 0008)", "+0008"),
    ("without moving the meter heads", "heads"),
    ("without linking readings to their message", "link"),
    ("with SQLite's default WAL checkpoint (1,000 pages) instead of the hub's", "checkpoint"),
]
#: what migration 0008 dropped, as 0007 left it
BEFORE_0008 = ("CREATE UNIQUE INDEX uq_energy_readings_hub_meter_seq ON energy_readings (hub, meter, seq)",
               "CREATE INDEX ix_energy_readings_party ON energy_readings (party)")


def hub_schema(path: Path) -> list[str]:
    """The CREATE statements of the energy manager's tables and the outbox's as the models make them."""
    from sqlalchemy import create_engine

    from energy_manager.models import MeterHead, StoredReading
    from mam_client.models import MessageBody, OutboxMessage
    from scb.db import Base

    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine, tables=[OutboxMessage.__table__, MessageBody.__table__, StoredReading.__table__,
                                             MeterHead.__table__])
    engine.dispose()
    db = sqlite3.connect(str(path))
    sql = [str(s) for (s,) in db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")]
    db.close()
    return sql


def replay(path: Path, schema: list[str], left_out: str | None, meters: int, warmup: int,
           samples: int) -> dict[str, Any]:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    from energy_manager.monitor import ADVANCE_HEAD
    from scb.wal import WAL_AUTOCHECKPOINT_PAGES

    db.execute(f"PRAGMA wal_autocheckpoint={1000 if left_out == 'checkpoint' else WAL_AUTOCHECKPOINT_PAGES}")
    if not any("energy_meter_heads" in statement for statement in schema):
        raise SystemExit("the hub's schema has no energy_meter_heads any more: this replay measures the wrong thing")
    for statement in schema:
        db.execute(statement)
    if left_out == "+digest":
        db.execute("CREATE UNIQUE INDEX uq_energy_readings_digest ON energy_readings (digest)")
    if left_out == "+0008":
        for statement in BEFORE_0008:
            db.execute(statement)
    heads = left_out not in ("heads", "+0008")
    message = stored_message()
    ts, window = 1_764_000_000_000, 600_000
    written = 0
    for s in range(warmup + samples):
        if s == warmup:
            written = io_counters(os.getpid()).get("write_bytes", 0)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO energy_readings (hub, meter, seq, party, circuit, ts_ms, register_wh, power_w, salt, "
            "canonical, digest, delta_wh, interval_ms, flags, window_start_ms, created_at) "
            "VALUES ('scb-demo-hub', ?, ?, ?, 'consumption', ?, ?, 200, ?, ?, ?, 3, 600000, '', ?, "
            "'2026-12-02 06:00:00.000000')",
            [(f"load{m}", s + 1, f"load{m}", ts, 1000 + s, secrets.token_hex(16), os.urandom(200),
              secrets.token_hex(32), ts) for m in range(meters)])
        if heads and not s:
            db.executemany("INSERT INTO energy_meter_heads (hub, meter, party, seq, ts_ms, register_wh) "
                           "VALUES ('scb-demo-hub', ?, ?, 1, ?, 1000)", [(f"load{m}", f"load{m}", ts)
                                                                          for m in range(meters)])
        elif heads:  # the monitor's own statement
            db.executemany(ADVANCE_HEAD.text, [{"hub": "scb-demo-hub", "meter": f"load{m}", "party": f"load{m}",
                                                "seq": s + 1, "ts_ms": ts, "register_wh": 1000 + s}
                                               for m in range(meters)])
        if left_out != "link" and s:
            ids = [db.execute("INSERT INTO mam_messages (channel, state, created_at, attempts, refusals) "
                              "VALUES ('readings', 'queued', '2026-12-02 06:00:00.000000', 0, 0)").lastrowid
                   for _ in range(-(-meters // READINGS_PER_MESSAGE))]
            db.executemany("INSERT INTO mam_message_bodies (message_id, part, data) VALUES (?, 'message', ?)",
                           [(i, message) for i in ids])
            rows = db.execute("SELECT id FROM energy_readings WHERE message_id IS NULL AND window_start_ms < ? "
                              "ORDER BY id", (ts,)).fetchall()
            db.executemany("UPDATE energy_readings SET message_id = ? WHERE id = ?",
                           [(ids[i * len(ids) // len(rows)], rid) for i, (rid,) in enumerate(rows)])
        db.execute("COMMIT")
        ts += window
    db.close()  # the last connection checkpoints the WAL into the file: part of the cost
    written = io_counters(os.getpid()).get("write_bytes", 0) - written
    return {"bytes_per_reading": round(written / (meters * samples), 1), "write_bytes": written}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=30, help="samples stored before measuring (default 30)")
    ap.add_argument("--samples", type=int, default=60, help="samples measured (default 60)")
    ap.add_argument("--dir", type=Path, help="where the SQLite files go (default: a temporary directory)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scb-writes-", dir=args.dir))  # removed by `report`
    schema = hub_schema(root / "schema.sqlite3")
    result: dict[str, Any] = {"benchmark": "sample_writes", "meters": args.meters, "warmup": args.warmup,
                              "samples": args.samples, "variants": {}}
    for i, (name, left_out) in enumerate(VARIANTS):
        result["variants"][name] = replay(root / f"v{i}.sqlite3", schema, left_out, args.meters, args.warmup,
                                          args.samples)
    add_savings(result["variants"], "hub", "bytes_per_reading", "saves_per_reading")
    return report(result, root, None)


if __name__ == "__main__":
    sys.exit(main())
