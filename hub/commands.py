"""The commands that span components: `scb status`, `scb verify`, `scb proof export`.

Each handler parses its flags and calls the application layer (hub.status, hub.verification), which the
dashboard calls too. Secrets (the channel's side key) come from files, never from the command line where
every user of the machine could read them in the process list.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scb import safejson
from scb.config import load_config
from scb.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    verify.add_argument("--fleet", metavar="URL", help="read the message, its channel and proofs from this fleet "
                        "server (the hub may be gone; roots still come from the chain)")
    verify.add_argument("--json", action="store_true", help="print the steps and the verdict as JSON")
    verify.set_defaults(handler=cmd_verify)

    proof = sub.add_parser("proof", help="self-contained proofs of readings")
    proof_sub = proof.add_subparsers(dest="proof_command", metavar="ACTION", required=True)
    export = proof_sub.add_parser("export", help="print the proof of a settled reading as JSON")
    export.add_argument("reading_id", type=int, metavar="READING_ID")
    export.set_defaults(handler=cmd_proof_export)

    status = sub.add_parser("status", help="the hub at a glance: processes, readings, outbox, settlements, alerts",
                            description="Exit 0: no alert; 1: at least one alert is raised (listed last); "
                            "2: no hub here.")
    status.add_argument("--json", action="store_true", help="print as JSON (processes with heartbeats, alerts)")
    status.set_defaults(handler=cmd_status)



def cmd_verify(args: argparse.Namespace) -> int:
    from hub.verification import chain_view_factory, verify_hub_address
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
        report = verify_proof_file(data, chain_view_factory(config, args.rpc), side_key)
        report.subject = f"proof file {args.proof}"
    elif args.fleet is not None:
        from hub.verification import verify_fleet_address

        if args.node:
            raise UsageError("give --fleet or --node, not both (the fleet serves the channel itself)")
        report = verify_fleet_address(config, args.address, args.fleet, side_key=side_key, root=args.root,
                                      mode=args.mode, rpc=args.rpc, contract=args.contract, system_id=args.system)
    else:
        report = verify_hub_address(config, args.address, side_key=side_key, root=args.root, mode=args.mode,
                                    rpc=args.rpc, contract=args.contract, system_id=args.system,
                                    node=args.node)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text(), flush=True)
    return report.verdict


def cmd_proof_export(args: argparse.Namespace) -> int:
    from hub.verification import export_proof, hub_channel_mode
    from scb.db import open_existing
    from settlement.verify import dumps

    config = load_config(args.config)
    factory = open_existing(config)
    if factory is None:
        raise UsageError(f"no hub database at {config.database_url}")
    sys.stdout.write(dumps(export_proof(factory, args.reading_id, hub_channel_mode(config))))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hub.status import hub_status
    from scb.db import open_existing

    config = load_config(args.config)
    factory = open_existing(config)
    if factory is None and not (config.data_dir / "run").is_dir():
        raise UsageError(f"no hub database at {config.database_url} (has the hub run here?)")
    status = hub_status(config, factory)
    if args.json:
        print(json.dumps(status, indent=2))
        return 1 if status["alerts"] else 0
    print_status(status)
    return 1 if status["alerts"] else 0


def _age(seconds: object) -> str:
    return f"{seconds:.0f} s ago" if isinstance(seconds, (int, float)) else "never"


def print_status(status: dict) -> None:  # type: ignore[type-arg]
    for proc in status["processes"]:
        beat = f", beat {_age(proc.get('heartbeat_age_s'))}" if proc.get("heartbeat", True) else ""
        note = f" ({proc['note']})" if proc.get("note") else ""
        print(f"process {proc['name']:<15} {proc.get('state', '-'):<10} pid {proc.get('pid')}, "
              f"{proc.get('restarts', 0)} restarts{beat}{note}")
        for loop, st in (proc.get("loops") or {}).items():
            if isinstance(st, dict) and st.get("error"):
                print(f"  {loop}: failing ({st.get('failures', 0)} tries): {st['error']}")
    r, o, s = status["readings"], status["outbox"], status["settlement"]
    if r is not None:
        last = r["last"]
        print(f"readings: {r['count']}" + (f", last {last['meter']}#{last['seq']} at {last['ts']}" if last else ""))
    if o is not None:
        states = ", ".join(f"{k} {v}" for k, v in sorted(o["by_state"].items())) or "empty"
        print(f"outbox: {states}" + (f"; last attached {o['last_attached']['address']}" if o["last_attached"]
                                     else ""))
    if s is None:
        print("settlement: no system yet")
    else:
        print(f"settlement: system {s['system_id']} on {s['contract']} (chain {s['chain_id']})")
        account = s.get("hub_account")
        if account:
            funded = account["settlements_funded"]
            print(f"  hub account {account['account']}: {account['balance_eth']} ether"
                  + (f", gas for about {funded} settlements" if funded is not None else "")
                  + f" (checked {account['checked_at']})")
        p = s["last_period"]
        if p:
            print(f"  last period {p['period_id']} [{p['start']} .. {p['end']}) {p['state']}, {p['readings']} "
                  f"readings, tx {p['tx'] or '-'}" + (f"; error: {p['error']}" if p["error"] else ""))
        if s["last_error"] and s.get("trouble") == "fee-cap":
            print(f"  waiting for fees: {s['last_error']}")
        elif s["last_error"]:
            print(f"  retrying after: {s['last_error']}")
        for party, d in s["holders"].items():
            mark = "" if d["applied"] in (None, True) else " (not applied yet)"
            print(f"  {party:<8} {d['account']} {(d['decision'] or '-').upper():<6} {d['reason']}{mark}")
    fleet = status.get("fleet_upload")
    if fleet is not None:
        waiting = ", ".join(f"{k} {v}" for k, v in fleet["waiting"].items() if v) or "nothing"
        print(f"fleet upload to {fleet['url']}: waiting {waiting}; {fleet['batches_sent']} batches sent"
              + (f"; last error: {fleet['last_error']}" if fleet["last_error"] else ""))
    alerts = status["alerts"]
    print(f"alerts: {len(alerts)}" if alerts else "alerts: none")
    for a in alerts:
        print(f"  ALERT {a['code']}: {a['message']}" + (f" (since {a['since']})" if a.get("since") else ""))
