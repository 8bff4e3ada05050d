"""`scb fleet serve` (the operator's fleet server) and `scb fleet allow ACCOUNT` (docs/fleet.md)."""
from __future__ import annotations

import argparse

from scb.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fleet = sub.add_parser("fleet", help="the fleet server: every hub's data, a permanode, the SaaS API",
                           description="The operator's server that hubs upload to (docs/fleet.md).")
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="serve the fleet ([fleet] host, port, database_url)")
    serve.set_defaults(handler=cmd_serve)
    allow = actions.add_parser("allow", help="let the hub with this Ethereum account upload")
    allow.add_argument("account", metavar="ACCOUNT", help="the hub's account (0x + 40 hex digits)")
    allow.add_argument("--note", default="", help="a note kept with the account (which hub it is)")
    allow.set_defaults(handler=cmd_allow)


def cmd_serve(args: argparse.Namespace) -> int:
    from fleet.server import serve
    from hub.fleet.settings import fleet_settings

    config = load_config(args.config)
    serve(config, fleet_settings(config))
    return 0


def cmd_allow(args: argparse.Namespace) -> int:
    from fleet.auth import allow, checked_account
    from fleet.db import open_fleet_database
    from hub.fleet.settings import fleet_settings

    config = load_config(args.config)
    account = checked_account(args.account)
    engine, factory = open_fleet_database(fleet_settings(config).database_url)
    try:
        added = allow(factory, account, args.note)
    finally:
        engine.dispose()
    print(f"{account} may upload" + ("" if added else " (it was allowed already)"))
    return 0
