"""`scb export readings|bills`: the hub's readings and the bills of its settled periods as CSV (docs/export.md).

The dashboard offers the same files (`/api/export/readings.csv`, `/api/export/bills.csv`) from the same
functions, so a household's download and the operator's command agree to the byte.

readings  one row per stored reading, oldest first: what the meter said, the energy settlement bills from it
          (`delta_wh`), the digest `scb verify` checks, the period and the MAM message it went into
bills     one row per holder and settled period: the consumption the hub reported, the bill the contract
          computed from it, how much of it the deposit paid and how much became debt (the contract's `Billed`
          event: hub.ledger), due time, the settle transaction

`--holder ID` (a party id such as h1, or the holder's account) keeps that holder's rows; `--from`/`--to` (ISO
8601 community time, `--to` exclusive) keep readings by timestamp and bills by period start.

Why a file is written to a temporary name and renamed: an export that fails halfway (the chain goes away, the disk
fills) leaves the previous file as it was instead of a truncated CSV that looks complete.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scb.errors import UsageError
from scb.timefmt import utc_iso

READING_COLUMNS = ("reading_id", "time", "ts_ms", "hub", "meter", "seq", "party", "circuit", "register_wh",
                   "power_w", "delta_wh", "flags", "digest", "period", "message_address")
BILL_COLUMNS = ("period_id", "start", "end", "party", "account", "consumption_wh", "generation_wh", "amount_wei",
                "from_deposit_wei", "unpaid_wei", "due", "settle_tx", "block")
KINDS = {"readings": READING_COLUMNS, "bills": BILL_COLUMNS}
#: Rows fetched from the database at a time: a year of one holder's readings must not sit in a Pi's memory.
BATCH = 2000


def parse_time(option: str, value: str | None) -> int | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as ms since the epoch; UsageError otherwise."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} must be an ISO 8601 date or date-time such as 2026-06-18 or "
                         f"2026-06-18T07:00:00Z, not {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _system(factory: sessionmaker[Session]) -> Any:
    from settlement.system import newest_system

    return newest_system(factory)


def resolve_holder(factory: sessionmaker[Session], holder: str | None) -> str | None:
    """The party id of `holder` (a party id or its account); UsageError for one the hub does not know."""
    if holder is None:
        return None
    from energy_manager.models import MeterHead, StoredReading

    system = _system(factory)
    if system is not None:
        if holder.lower() in system.party_of:
            return str(system.party_of[holder.lower()])
        if holder in system.holders:
            return holder
    with factory() as session:
        # the household of a meter now (its head), or one with settled readings (ix_energy_readings_party_period)
        if (session.scalar(select(MeterHead.meter).where(MeterHead.party == holder).limit(1)) is not None
                or session.scalar(select(StoredReading.id).where(
                    StoredReading.party == holder, StoredReading.period.is_not(None)).limit(1)) is not None):
            return holder
    known = ", ".join(sorted(system.holders)) if system is not None else "none yet"
    raise UsageError(f"no holder {holder[:64]!r} in this hub (holders: {known})")


# ------------------------------------------------------------------------------------------------ readings


def reading_rows(factory: sessionmaker[Session], party: str | None = None, from_ms: int | None = None,
                 to_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Readings oldest first (by timestamp, then id), streamed in batches."""
    from energy_manager.models import StoredReading
    from mam_client.models import OutboxMessage

    query = (select(StoredReading, OutboxMessage.address)
             .outerjoin(OutboxMessage, OutboxMessage.id == StoredReading.message_id)
             .order_by(StoredReading.ts_ms, StoredReading.id))
    if party is not None:
        query = query.where(StoredReading.party == party)
    if from_ms is not None:
        query = query.where(StoredReading.ts_ms >= from_ms)
    if to_ms is not None:
        query = query.where(StoredReading.ts_ms < to_ms)
    with factory() as session:
        for r, address in session.execute(query.execution_options(yield_per=BATCH)):
            yield {"reading_id": r.id, "time": utc_iso(r.ts_ms / 1000), "ts_ms": r.ts_ms, "hub": r.hub,
                   "meter": r.meter, "seq": r.seq, "party": r.party, "circuit": r.circuit,
                   "register_wh": r.register_wh, "power_w": r.power_w, "delta_wh": r.delta_wh, "flags": r.flags,
                   "digest": r.digest, "period": r.period if r.period is not None else "",
                   "message_address": address or ""}


# ------------------------------------------------------------------------------------------------ bills


def bill_rows(factory: sessionmaker[Session], client: Any, party: str | None = None, from_ms: int | None = None,
              to_ms: int | None = None) -> list[dict[str, Any]]:
    """One row per holder and settled period of the hub's system, oldest period first.

    `client`: a settlement.chain.ChainClient for the amounts (the contract's Billed events); None leaves the
    amount columns empty (the hub's own record only)."""
    from hub import ledger
    from settlement.models import SETTLED, SettlementPeriod

    system = _system(factory)
    if system is None:
        return []
    query = (select(SettlementPeriod).where(SettlementPeriod.system_ref == system.ref,
                                            SettlementPeriod.state == SETTLED)
             .order_by(SettlementPeriod.period_id))
    if from_ms is not None:
        query = query.where(SettlementPeriod.start_s >= from_ms // 1000)
    if to_ms is not None:
        query = query.where(SettlementPeriod.start_s < -(-to_ms // 1000))
    with factory() as session:
        periods = list(session.scalars(query))
    billed = ledger.bills(client, system) if client is not None and periods else {}
    rows = []
    for p in periods:
        try:
            consumption = json.loads(p.consumption_json)
        except ValueError:
            consumption = []
        period_bills = billed.get(p.period_id, [])
        for index, entry in enumerate(consumption):
            if party is not None and entry.get("party") != party:
                continue
            bill = period_bills[index] if index < len(period_bills) else None
            rows.append({
                "period_id": p.period_id, "start": utc_iso(p.start_s), "end": utc_iso(p.end_s),
                "party": entry.get("party", ""), "account": entry.get("account", ""),
                "consumption_wh": entry.get("wh", ""), "generation_wh": p.generation_wh,
                "amount_wei": bill.amount_wei if bill else "", "from_deposit_wei": bill.from_deposit_wei if bill else "",
                "unpaid_wei": bill.unpaid_wei if bill else "",
                "due": utc_iso(p.due_time) if p.due_time else "", "settle_tx": p.tx_hash or "",
                "block": p.block_number if p.block_number is not None else ""})
    return rows


def chain_client(config: Any, factory: sessionmaker[Session]) -> Any:
    """A read-only client of the configured chain (no account: exporting signs nothing), its log scans starting at
    the deployment block the hub stored."""
    from hub.ledger import reader_client
    from settlement.chain import ChainClient
    from settlement.settings import ethereum_settings

    return reader_client(ChainClient(ethereum_settings(config)), factory)


# ------------------------------------------------------------------------------------------------ CSV


def write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> int:
    """Write a header and `rows` as CSV (RFC 4180, `\\r\\n` line ends, as spreadsheets expect); returns the count."""
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def export_rows(kind: str, config: Any, factory: sessionmaker[Session], holder: str | None, from_ms: int | None,
                to_ms: int | None) -> Iterable[dict[str, Any]]:
    """The rows of export `kind` ("readings" or "bills"), for the command and the dashboard."""
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise UsageError("--to must be later than --from")
    party = resolve_holder(factory, holder)
    if kind == "readings":
        return reading_rows(factory, party, from_ms, to_ms)
    if kind == "bills":
        return bill_rows(factory, chain_client(config, factory), party, from_ms, to_ms)
    raise UsageError(f"export what? one of {', '.join(KINDS)}, not {kind!r}")


# ------------------------------------------------------------------------------------------------ the command


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="readings or bills as CSV (per holder or for the system)",
                       description="Columns: docs/export.md. Times are ISO 8601 community time (UTC).")
    p.add_argument("kind", choices=tuple(KINDS), help="readings: every stored reading; bills: per holder and "
                                                      "settled period, with the amounts the contract billed")
    p.add_argument("--holder", metavar="ID", help="one holder: party id (e.g. h1) or account")
    p.add_argument("--from", dest="from_", metavar="TIME", help="from this community time on (e.g. 2026-06-18)")
    p.add_argument("--to", metavar="TIME", help="before this community time")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write, or - for standard output")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from scb.config import load_config
    from scb.db import open_existing

    from_ms, to_ms = parse_time("--from", args.from_), parse_time("--to", args.to)
    config = load_config(args.config)
    factory = open_existing(config)
    if factory is None:
        raise UsageError(f"no hub database at {config.database_url} (has the hub run here?)")
    rows = export_rows(args.kind, config, factory, args.holder, from_ms, to_ms)
    columns = KINDS[args.kind]
    if args.out == "-":
        write_csv(rows, columns, sys.stdout)
        return 0
    target = Path(args.out)
    if target.is_dir():
        raise UsageError(f"--out {target} is a directory; give a file name")
    temporary = target.with_name(f".{target.name}.partial")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as out:
            count = write_csv(rows, columns, out)
        os.replace(temporary, target)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    print(f"{count} {args.kind} rows written to {target}", file=sys.stderr)
    return 0
