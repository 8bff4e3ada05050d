"""`scb energy-manager` (the sampling process) and `scb readings` (what it stored)."""
from __future__ import annotations

import argparse
import json

from scb.config import load_config
from scb.timefmt import utc_iso_ms


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "energy-manager",
        help="sample the meters, store readings, queue them for MAM publication",
        description="Sample every configured meter each sample interval, store the readings, and queue each "
        "publish window's readings as a MAM message for `scb mam-client`. Stops cleanly on SIGTERM/Ctrl-C.",
    )
    p.add_argument("--samples", type=int, metavar="N", help="stop after N samples (for tests and trials)")
    p.set_defaults(handler=_run)

    r = subparsers.add_parser("readings", help="show the newest stored readings and the input counters")
    r.add_argument("--meter", help="only this meter")
    r.add_argument("--limit", type=int, default=20, metavar="N", help="how many readings (default 20)")
    r.add_argument("--json", action="store_true", help="one JSON object per line (canonical fields + digest)")
    r.set_defaults(handler=_readings)

    m = subparsers.add_parser("meters", help="installer tools for the configured meters")
    msub = m.add_subparsers(dest="meters_command", metavar="COMMAND", required=True)
    scan = msub.add_parser(
        "scan", help="read each configured device once and show what it found",
        description="Read each configured device (or only DEVICE) once and print its profile and values with their "
        "units. Exit 1 when a device does not answer, with the reason. On an RS-485 bus, stop the energy manager "
        "first: two masters on one bus garble each other's requests.",
    )
    scan.add_argument("device", nargs="?", help="only this device (a name under [energy.devices])")
    scan.add_argument("--json", action="store_true", help="one JSON object with every device's result")
    scan.add_argument("--wait", type=float, default=15.0, metavar="S",
                      help="seconds to wait for a sample from non-Modbus devices (default 15)")
    scan.set_defaults(handler=_scan)


def _run(args: argparse.Namespace) -> int:
    from energy_manager.service import run

    if args.samples is not None and args.samples < 1:
        from scb.errors import ConfigError

        raise ConfigError("--samples must be at least 1")
    return run(load_config(args.config), max_samples=args.samples)


def _readings(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from energy_manager.models import InputCounter, StoredReading
    from scb.db import init_db, make_sessionmaker

    engine = init_db(load_config(args.config))
    try:
        with make_sessionmaker(engine)() as session:
            query = select(StoredReading).order_by(StoredReading.id.desc()).limit(max(1, args.limit))
            if args.meter:
                query = query.where(StoredReading.meter == args.meter)
            rows = list(reversed(session.execute(query).scalars().all()))
            counters = session.execute(select(InputCounter).order_by(InputCounter.source, InputCounter.kind)).scalars().all()
    finally:
        engine.dispose()
    if args.json:
        for row in rows:
            print(json.dumps({"canonical": row.canonical.decode("ascii"), "digest": "0x" + row.digest,
                              "delta_wh": row.delta_wh, "flags": row.flags, "message_id": row.message_id}))
        return 0
    if not rows:
        print("no readings stored yet")
    for row in rows:
        print(f"{utc_iso_ms(row.ts_ms)}  {row.meter:<12} #{row.seq:<7} {row.register_wh:>12} Wh {row.power_w:>7} W "
              f"+{row.delta_wh} Wh {row.flags or '':<12} message {row.message_id or '-'}")
    if counters:
        print("\ninput counters:")
        for c in counters:
            print(f"  {c.source:<12} {c.kind:<16} {c.count:>8}  last: {c.last_detail[:100]}")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from energy_manager.scan import scan, show
    from energy_manager.settings import load_energy_settings
    from scb.errors import UsageError

    settings = load_energy_settings(load_config(args.config))
    if args.device is not None and args.device not in settings.devices:
        raise UsageError(f"no device {args.device!r} in [energy.devices]; configured: "
                         f"{', '.join(sorted(settings.devices))}")
    if not args.wait > 0:
        raise UsageError("--wait must be a number of seconds greater than 0")
    names = [args.device] if args.device else list(settings.devices)
    results = scan(settings, names, args.wait)
    if args.json:
        print(json.dumps({"devices": [r.as_json() for r in results], "ok": all(r.ok for r in results)},
                         sort_keys=True))
    else:
        print("\n".join(show(r) for r in results))
    return 0 if all(r.ok for r in results) else 1
