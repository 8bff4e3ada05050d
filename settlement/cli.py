"""Settlement commands: `scb settlement`, `scb settle --now`, `scb chain deploy|info`, `scb verify`,
`scb proof export`, `scb status`.

Secrets (the keystore password, the channel's side key) come from files, never from the command line where every
user of the machine could read them in the process list.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scb import safejson
from scb.config import Config, load_config
from scb.errors import ScbError, UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    service = sub.add_parser("settlement", help="run the settlement jobs: settle closed periods, supply decisions")
    service.set_defaults(handler=cmd_service)

    settle = sub.add_parser("settle", help="settle every closed period now (operators)")
    settle.add_argument("--now", action="store_true", required=True,
                        help="settle now, even while the service is backing off after errors")
    settle.set_defaults(handler=cmd_settle)

    chain = sub.add_parser("chain", help="the SolarProperty contract: deploy it, show the hub's system")
    chain_sub = chain.add_subparsers(dest="chain_command", metavar="ACTION", required=True)
    deploy = chain_sub.add_parser("deploy", help="deploy SolarProperty with the hub account; prints its address")
    deploy.add_argument("--admin", help="DEFAULT_ADMIN_ROLE holder (default: the hub account)")
    deploy.add_argument("--approver", help="APPROVER_ROLE holder (default: the hub account)")
    deploy.add_argument("--register-demo", action="store_true",
                        help="also register the demo system (development chains) and remember it")
    deploy.set_defaults(handler=cmd_deploy)
    info = chain_sub.add_parser("info", help="the hub's system on chain: holders, standing, last period")
    info.set_defaults(handler=cmd_chain_info)

    verify = sub.add_parser(
        "verify", help="verify the readings at a MAM address (or a proof file) against the chain",
        description="Exit 0: valid; 1: invalid (the failing step says why); 2: could not check.")
    verify.add_argument("address", nargs="?", metavar="ADDRESS", help="81-tryte address of a readings message")
    verify.add_argument("--proof", metavar="FILE", help="verify a proof file from `scb proof export` instead")
    verify.add_argument("--root", help="MAM root the message at ADDRESS was signed under")
    verify.add_argument("--side-key-file", help="file with the channel's side key (restricted channels; mode 0600)")
    verify.add_argument("--mode", choices=("public", "private", "restricted"),
                        help="channel mode (default: the hub's channel, else restricted)")
    verify.add_argument("--rpc", metavar="URL", help="Ethereum JSON-RPC endpoint (default: [ethereum] rpc_url)")
    verify.add_argument("--contract", metavar="ADDR", help="SolarProperty address (default: the hub's)")
    verify.add_argument("--system", type=int, metavar="ID", help="system id (default: the hub's, else 1)")
    verify.add_argument("--node", metavar="URL", help="IOTA node (default: [iota] node_url or the local node)")
    verify.add_argument("--json", action="store_true", help="print the steps and the verdict as JSON")
    verify.set_defaults(handler=cmd_verify)

    proof = sub.add_parser("proof", help="self-contained proofs of readings")
    proof_sub = proof.add_subparsers(dest="proof_command", metavar="ACTION", required=True)
    export = proof_sub.add_parser("export", help="print the proof of a settled reading as JSON")
    export.add_argument("reading_id", type=int, metavar="READING_ID")
    export.set_defaults(handler=cmd_proof_export)

    status = sub.add_parser("status", help="the hub at a glance: readings, outbox, settlements, supply decisions")
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(handler=cmd_status)


# ------------------------------------------------------------------------------------------------ helpers


def _hub_factory(config: Config):  # type: ignore[no-untyped-def]
    """The hub's database if this machine has one (None elsewhere: verification then relies on flags)."""
    from scb.db import open_database

    url = config.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return open_database(config)


def _latest_system(factory, contract: str | None = None):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from settlement.models import SettlementSystem
    from settlement.system import SystemRef

    if factory is None:
        return None
    with factory() as session:
        query = select(SettlementSystem)
        if contract:
            query = query.where(SettlementSystem.contract == contract)
        row = session.scalars(query.order_by(SettlementSystem.id.desc()).limit(1)).first()
        return SystemRef.of(row) if row is not None else None


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------ service


def cmd_service(args: argparse.Namespace) -> int:
    from settlement.service import run

    return run(load_config(args.config))


def cmd_settle(args: argparse.Namespace) -> int:
    from settlement.service import SettlementService

    service = SettlementService(load_config(args.config))
    try:
        report = service.settle(force=True)
    finally:
        service.close()
    if report is None:
        raise ScbError(f"cannot settle: {service._connect_backoff.last_error or 'the chain is unreachable'}")
    for period in report.adopted:
        print(f"period {period}: found on chain, adopted")
    for period in report.abandoned:
        print(f"period {period}: abandoned (the chain moved past it); its readings go to the next period")
    for period in report.settled:
        print(f"period {period}: settled")
    if not report.settled:
        print(f"nothing to settle: {report.waiting}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from energy_manager.settings import load_energy_settings
    from settlement.chain import connect
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.system import deploy_contract, register_demo
    from scb.db import open_database

    config = load_config(args.config)
    eth = ethereum_settings(config)
    client = connect(eth)
    address = deploy_contract(client, args.admin, args.approver)
    print(address)
    if args.register_demo:
        if not client.is_dev_chain():
            raise UsageError("--register-demo registers the demo households' development accounts: only on a "
                             "development chain")
        ref = register_demo(config, open_database(config), client, address, load_energy_settings(config),
                            settlement_settings(config))
        print(f"registered system {ref.system_id}", file=sys.stderr)
    return 0


def cmd_chain_info(args: argparse.Namespace) -> int:
    from settlement.chain import connect
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.supply import SupplyWatcher, decide

    config = load_config(args.config)
    eth = ethereum_settings(config)
    st = settlement_settings(config)
    system = _latest_system(_hub_factory(config), None)
    contract = eth.contract_address or (system.contract if system else None)
    if contract is None:
        raise UsageError("no contract: set ethereum.contract_address, or run `scb settlement` once")
    client = connect(eth, with_account=False)
    c = client.contract(contract)
    system_id = st.system_id or (system.system_id if system else 1)
    info = client.call(c.functions.systemInfo(system_id), "systemInfo")
    print(f"chain {client.chain_id}, SolarProperty {contract}, system {system_id}")
    print(f"  price {info[1]} wei/kWh, total value {info[2]} wei, grace {info[3]} s, grid share {info[6]} bps")
    print(f"  last period {info[7]} (ended {_iso(info[8]) if info[8] else '-'})")
    if system is not None:
        watcher = SupplyWatcher(None, client, system, None, None, None)  # type: ignore[arg-type]
        for standing in watcher.standings():
            decision, reason = decide(standing)
            print(f"  {standing.party:<8} {standing.account} {standing.status:<11} debt {standing.debt} wei, "
                  f"deposit {standing.prepaid} wei -> {decision} ({reason})")
    return 0


# ------------------------------------------------------------------------------------------------ verify


def _chain_view_factory(config: Config, rpc: str | None) -> Callable[[str, int], Any]:
    from settlement.chain import ChainClient
    from settlement.settings import ethereum_settings
    from settlement.verify import ChainView

    eth = ethereum_settings(config)

    def make(contract: str, system_id: int) -> ChainView:
        return ChainView(ChainClient(eth, rpc_url=rpc), contract, system_id)

    return make


def cmd_verify(args: argparse.Namespace) -> int:
    from scb.files import read_secret_file
    from settlement.verify import verify_proof_file

    if (args.address is None) == (args.proof is None):
        raise UsageError("give either an ADDRESS or --proof FILE")
    config = load_config(args.config)
    side_key = read_secret_file(args.side_key_file, "side key") if args.side_key_file else None
    if args.proof is not None:
        try:
            data = safejson.loads(Path(args.proof).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"proof file {args.proof} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"proof file {args.proof} is not readable JSON: {exc}") from None
        report = verify_proof_file(data, _chain_view_factory(config, args.rpc), side_key)
        report.subject = f"proof file {args.proof}"
    else:
        report = verify_hub_address(config, args.address, side_key=side_key, root=args.root, mode=args.mode,
                                    rpc=args.rpc, contract=args.contract, system_id=args.system,
                                    node=args.node)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text(), flush=True)
    return report.verdict


#: `verify_hub_address(factory=...)` default: open the hub's database if this machine has one
_OPEN_HUB_DATABASE: Any = object()


def verify_hub_address(config: Config, address: str, *, factory: Any = _OPEN_HUB_DATABASE,
                       side_key: str | None = None, root: str | None = None, mode: str | None = None,
                       rpc: str | None = None, contract: str | None = None, system_id: int | None = None,
                       node: str | None = None, transport: Any = None):  # type: ignore[no-untyped-def]
    """`scb verify ADDRESS` as a function returning the Report, so the dashboard runs exactly the same verification.

    `factory`: the hub's session factory (the dashboard passes its own, open one), None for no hub database,
    default: open it when it exists. `transport`: the tangle node client (default: [iota] or `node`).
    """
    from eth_utils import to_checksum_address
    from sqlalchemy import select

    from energy_manager.models import StoredReading
    from energy_manager.settings import load_energy_settings
    from mam_client.models import OutboxMessage
    from mam_client.service import make_transport
    from mam_client.settings import iota_settings, mam_settings
    from scb.files import read_secret_file
    from settlement.models import SETTLED, ReadingProof, SettlementPeriod
    from settlement.settings import settlement_settings
    from settlement.verify import AddressContext, HubRecord, verify_address

    if factory is _OPEN_HUB_DATABASE:
        factory = _hub_factory(config)
    contract = to_checksum_address(contract) if contract else None
    system = _latest_system(factory, contract)
    if contract is None:
        contract = system.contract if system else None
    if contract is None:
        from settlement.settings import ethereum_settings

        contract = ethereum_settings(config).contract_address
    if contract is None:
        raise UsageError("which contract? give --contract (no hub database here and no ethereum.contract_address)")
    system_id = system_id or (system.system_id if system else None) or settlement_settings(config).system_id or 1
    channel = mam_settings(config).channels.get(load_energy_settings(config).channel)
    mode = mode or (channel.mode if channel else "restricted")
    if side_key is None and mode == "restricted" and channel is not None and channel.side_key_file is not None \
            and channel.side_key_file.exists():
        side_key = read_secret_file(channel.side_key_file, f"side key of channel {channel.name}")
    iota = iota_settings(config)
    if node:
        iota = type(iota)(**{**iota.__dict__, "node_url": node})

    root_lookup = reading_lookup = archive = None
    if factory is not None:
        def archive(address: str) -> list[str]:  # the hub's archive: what it published, kept in its database
            with factory() as session:
                return [p for p in session.scalars(select(OutboxMessage.payload).where(
                    OutboxMessage.address == address, OutboxMessage.payload.is_not(None))) if p]

        def root_lookup(address: str) -> str | None:
            with factory() as session:
                return session.scalars(select(OutboxMessage.root).where(OutboxMessage.address == address,
                                                                        OutboxMessage.root.is_not(None))
                                       .limit(1)).first()

        def reading_lookup(digest: str) -> HubRecord | None:
            with factory() as session:
                reading = session.scalars(select(StoredReading).where(StoredReading.digest == digest)).first()
                if reading is None:
                    return None
                query = (select(ReadingProof, SettlementPeriod)
                         .join(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                         .where(ReadingProof.reading_id == reading.id, SettlementPeriod.state == SETTLED))
                if system is not None:
                    query = query.where(SettlementPeriod.system_ref == system.ref)
                found = session.execute(query).first()
                if found is None:
                    return HubRecord(reading.id, None, None, False)
                proof, period = found
                return HubRecord(reading.id, period.period_id, proof.siblings(), proof.late)

    ctx = AddressContext(transport=transport if transport is not None else make_transport(iota), archive=archive,
                         mode=mode, side_key=side_key, chain=_chain_view_factory(config, rpc)(contract, system_id),
                         root=root, root_lookup=root_lookup, reading_lookup=reading_lookup)
    return verify_address(address, ctx)


# ------------------------------------------------------------------------------------------------ proof export


def export_proof(factory, reading_id: int, mode: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The proof file of a settled reading, from the hub's database alone."""
    from energy_manager.models import StoredReading
    from mam_client.models import OutboxMessage
    from sqlalchemy import select

    from settlement.models import SETTLED, ReadingProof, SettlementPeriod, SettlementSystem
    from settlement.verify import build_proof_file

    with factory() as session:
        reading = session.get(StoredReading, reading_id)
        if reading is None:
            raise UsageError(f"no reading {reading_id} in the hub's database")
        found = session.execute(select(ReadingProof, SettlementPeriod)
                                .join(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                                .where(ReadingProof.reading_id == reading_id)).first()
        if found is None or found[1].state != SETTLED:
            raise UsageError(f"reading {reading_id} is not settled yet (its period closes after "
                             f"{_iso(reading.ts_ms / 1000)} plus the lateness window)")
        proof, period = found
        if period.tx_hash is None:
            raise UsageError(f"period {period.period_id} was adopted from the chain without its transaction")
        system = session.get(SettlementSystem, period.system_ref)
        message = session.get(OutboxMessage, reading.message_id) if reading.message_id else None
        assert system is not None
        return build_proof_file(
            reading_id=reading.id, canonical=reading.canonical, digest=reading.digest, proof=proof.siblings(),
            root=period.readings_root, late=proof.late, chain_id=system.chain_id, contract=system.contract,
            system_id=system.system_id, period_id=period.period_id, start_s=period.start_s, end_s=period.end_s,
            tx_hash=period.tx_hash, block_number=period.block_number, channel_root=system.channel_root, mode=mode,
            mam_root=message.root if message else None, address=message.address if message else None,
            payload=message.payload if message else None, bundle_hash=message.bundle_hash if message else None,
            period_mam_root=period.mam_root)


def cmd_proof_export(args: argparse.Namespace) -> int:
    from energy_manager.settings import load_energy_settings
    from mam_client.settings import mam_settings
    from settlement.verify import dumps

    config = load_config(args.config)
    factory = _hub_factory(config)
    if factory is None:
        raise UsageError(f"no hub database at {config.database_url}")
    channel = mam_settings(config).channels.get(load_energy_settings(config).channel)
    sys.stdout.write(dumps(export_proof(factory, args.reading_id, channel.mode if channel else "restricted")))
    return 0


# ------------------------------------------------------------------------------------------------ status


def collect_status(factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The hub's state from its database alone (works while the chain or the node is down)."""
    from sqlalchemy import func, select

    from energy_manager.models import StoredReading
    from mam_client.models import ATTACHED, OutboxMessage
    from settlement.job import load_json_state
    from settlement.models import SettlementPeriod, SettlementSystem, SupplyDecision

    out: dict[str, Any] = {}
    with factory() as session:
        last = session.scalars(select(StoredReading).order_by(StoredReading.id.desc()).limit(1)).first()
        out["readings"] = {"count": session.scalar(select(func.count(StoredReading.id))) or 0,
                           "last": None if last is None else {"id": last.id, "meter": last.meter, "seq": last.seq,
                                                              "ts": _iso(last.ts_ms / 1000)}}
        depth = session.execute(select(OutboxMessage.state, func.count(OutboxMessage.id))
                                .group_by(OutboxMessage.state)).all()
        attached = session.scalars(select(OutboxMessage).where(OutboxMessage.state == ATTACHED)
                                   .order_by(OutboxMessage.id.desc()).limit(1)).first()
        out["outbox"] = {"by_state": {s: n for s, n in depth},
                         "last_attached": None if attached is None else {
                             "id": attached.id, "address": attached.address,
                             "at": attached.attached_at.isoformat() if attached.attached_at else None}}
        system = session.scalars(select(SettlementSystem).order_by(SettlementSystem.id.desc()).limit(1)).first()
        if system is None:
            out["settlement"] = None
            return out
        period = session.scalars(select(SettlementPeriod).where(SettlementPeriod.system_ref == system.id)
                                 .order_by(SettlementPeriod.period_id.desc()).limit(1)).first()
        backoff = load_json_state(session, f"settle-backoff:{system.id}") or {}
        holders = json.loads(system.holders_json)
        decisions = {}
        for party, account in holders.items():
            d = session.scalars(select(SupplyDecision).where(SupplyDecision.system_ref == system.id,
                                                             SupplyDecision.party == party)
                                .order_by(SupplyDecision.id.desc()).limit(1)).first()
            decisions[party] = {"account": account, "decision": d.decision if d else None,
                                "reason": d.reason if d else "no decision yet",
                                "status": d.status if d else None, "debt_wei": d.debt_wei if d else None,
                                "applied": d.applied if d else None,
                                "since": d.decided_at.isoformat() if d and d.decided_at else None}
        out["settlement"] = {
            "chain_id": system.chain_id, "contract": system.contract, "system_id": system.system_id,
            "last_period": None if period is None else {
                "period_id": period.period_id, "state": period.state, "start": _iso(period.start_s),
                "end": _iso(period.end_s), "readings": period.reading_count, "tx": period.tx_hash,
                "error": period.last_error},
            "last_error": backoff.get("last_error") or None,
            "holders": decisions,
        }
    return out


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    factory = _hub_factory(config)
    if factory is None:
        raise UsageError(f"no hub database at {config.database_url} (has the hub run here?)")
    status = collect_status(factory)
    from scb.supervisor import process_status

    status["processes"] = process_status(config.data_dir)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for proc in status["processes"]:
        print(f"process {proc['name']:<15} {'running' if proc['running'] else 'stopped':<8} pid {proc['pid']}, "
              f"{proc['restarts']} restarts, log {proc['log']}")
    r, o, s = status["readings"], status["outbox"], status["settlement"]
    last = r["last"]
    print(f"readings: {r['count']}" + (f", last {last['meter']}#{last['seq']} at {last['ts']}" if last else ""))
    states = ", ".join(f"{k} {v}" for k, v in sorted(o["by_state"].items())) or "empty"
    print(f"outbox: {states}" + (f"; last attached {o['last_attached']['address']}" if o["last_attached"] else ""))
    if s is None:
        print("settlement: no system yet")
        return 0
    print(f"settlement: system {s['system_id']} on {s['contract']} (chain {s['chain_id']})")
    p = s["last_period"]
    if p:
        print(f"  last period {p['period_id']} [{p['start']} .. {p['end']}) {p['state']}, {p['readings']} readings, "
              f"tx {p['tx'] or '-'}" + (f"; error: {p['error']}" if p["error"] else ""))
    if s["last_error"]:
        print(f"  retrying after: {s['last_error']}")
    for party, d in s["holders"].items():
        mark = "" if d["applied"] in (None, True) else " (not applied yet)"
        print(f"  {party:<8} {d['account']} {(d['decision'] or '-').upper():<6} {d['reason']}{mark}")
    return 0
