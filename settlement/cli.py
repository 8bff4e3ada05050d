"""Settlement commands: `scb settlement`, `scb settle --now`, `scb chain deploy|register-system|info`.

(`scb verify`, `scb proof export` and `scb status` span components: they are the application layer's, hub.commands.)
Secrets (the keystore password) come from files, never from the command line where every user of the machine
could read them in the process list.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scb.config import load_config
from scb.db import open_existing
from scb.errors import ScbError, UsageError
from scb.timefmt import utc_iso

if TYPE_CHECKING:  # imported when a command runs: `scb --help` imports no chain code
    from settlement.chain import ChainClient
    from settlement.settings import EthereumSettings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    service = sub.add_parser("settlement", help="run the settlement jobs: settle closed periods, supply decisions")
    service.set_defaults(handler=cmd_service)

    settle = sub.add_parser("settle", help="settle every closed period now (operators)")
    settle.add_argument("--now", action="store_true", required=True,
                        help="settle now, even while the service is backing off after errors")
    settle.set_defaults(handler=cmd_settle)

    chain = sub.add_parser("chain", help="the SolarProperty contract: deploy it, register and show the hub's system, "
                                         "the approver's operations (cancel-period, assign-share, set-beneficiary)")
    chain_sub = chain.add_subparsers(dest="chain_command", metavar="ACTION", required=True)
    deploy = chain_sub.add_parser("deploy", help="deploy SolarProperty (hub account, or --keystore); prints its "
                                                 "address, records it and its deployment block in the hub's database")
    deploy.add_argument("--admin", help="DEFAULT_ADMIN_ROLE holder (default: the signing account)")
    deploy.add_argument("--approver", help="APPROVER_ROLE holder (default: the signing account)")
    deploy.add_argument("--keystore", type=Path, metavar="FILE",
                        help="sign with this encrypted keystore (mode 0600; e.g. the approver's) instead of the hub "
                             "account")
    deploy.add_argument("--password-file", type=Path, metavar="FILE",
                        help="the keystore's password (a 0600 file: never on the command line)")
    deploy.add_argument("--register-demo", action="store_true",
                        help="also register the demo system (development chains) and remember it")
    deploy.set_defaults(handler=cmd_deploy)
    register = chain_sub.add_parser(
        "register-system", help="register the hub's system on SolarProperty as its approver (holders from "
                                "[settlement.holders], terms from [settlement.demo] or flags); prints its id")
    register.add_argument("--contract", help="SolarProperty's address (default: ethereum.contract_address)")
    register.add_argument("--keystore", type=Path, metavar="FILE", required=True,
                          help="the approver's encrypted keystore (mode 0600)")
    register.add_argument("--password-file", type=Path, metavar="FILE", required=True,
                          help="its password (a 0600 file: never on the command line)")
    register.add_argument("--hub", help="the hub account (default: the one this hub signs with)")
    register.add_argument("--beneficiary", help="who receives the revenue (default: [settlement.demo] or the hub)")
    register.add_argument("--price-per-kwh-wei", type=int, help="default: [settlement.demo] price_per_kwh_wei")
    register.add_argument("--total-value-wei", type=int, help="default: [settlement.demo] total_value_wei")
    register.add_argument("--grace-period-s", type=int, help="default: [settlement.demo] grace_period_s")
    register.add_argument("--peak-power-w", type=int, help="default: [settlement.demo] peak_power_w")
    register.add_argument("--holder-peak-w", type=int, help="default: [settlement.demo] holder_peak_w")
    register.add_argument("--shares-bps", help="comma-separated, in [settlement.holders] order (default: equal)")
    register.set_defaults(handler=cmd_register_system)
    info = chain_sub.add_parser("info", help="the hub's system on chain: holders, standing, last period")
    info.set_defaults(handler=cmd_chain_info)
    _approver_commands(chain_sub)


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


def _signing_client(eth: EthereumSettings, args: argparse.Namespace) -> ChainClient:
    """A chain client signing with `--keystore`/`--password-file` when given (e.g. the approver's), else with the
    hub account."""
    from settlement.chain import connect, load_keystore

    if (args.keystore is None) != (args.password_file is None):
        raise UsageError("--keystore and --password-file go together")
    client = connect(eth, with_account=args.keystore is None)
    if args.keystore is not None:
        client.account = load_keystore(args.keystore, args.password_file)
    return client


def cmd_deploy(args: argparse.Namespace) -> int:
    from energy_manager.settings import load_energy_settings
    from settlement.logscan import DeploymentStore
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.system import deploy_contract, register_demo
    from scb.db import open_database

    config = load_config(args.config)
    eth = ethereum_settings(config)
    client = _signing_client(eth, args)
    factory = open_database(config)
    client.deployment_store = DeploymentStore(factory)  # the deployment block goes to the hub's database
    address = deploy_contract(client, args.admin, args.approver)
    block = client.log_floor(address)
    print(address)
    print(f"deployed SolarProperty at {address} on chain {client.chain_id} in block {block}, signed by "
          f"{client.sender} (admin {args.admin or client.sender}, approver {args.approver or client.sender}); "
          "recorded with its deployment block in the hub's database", file=sys.stderr)
    if args.register_demo:
        if not client.is_dev_chain():
            raise UsageError("--register-demo registers the demo households' development accounts: only on a "
                             "development chain")
        ref = register_demo(config, factory, client, address, load_energy_settings(config),
                            settlement_settings(config))
        print(f"registered system {ref.system_id}", file=sys.stderr)
    return 0


def cmd_register_system(args: argparse.Namespace) -> int:
    """The approver registers the hub's system against any RPC; the hub's database remembers it (the system row
    the service settles, and the contract's deployment block)."""
    import dataclasses

    from settlement.abi import to_checksum_address

    from energy_manager.settings import load_energy_settings
    from settlement.chain import connect, hub_account, load_keystore
    from settlement.logscan import DeploymentStore
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.system import equal_shares, register_system
    from scb.db import open_database

    config = load_config(args.config)
    eth, st, energy = ethereum_settings(config), settlement_settings(config), load_energy_settings(config)
    contract = args.contract or eth.contract_address
    if not contract:
        raise UsageError("which contract? give --contract or set ethereum.contract_address")
    if not st.holders:
        raise UsageError("map the system's holders in [settlement.holders] (party = \"0x...\") first")
    demo = st.demo
    shares = [int(x) for x in args.shares_bps.split(",")] if args.shares_bps else \
        list(demo.shares_bps) or equal_shares(len(st.holders))
    if len(shares) != len(st.holders) or sum(shares) != 10_000:
        raise UsageError(f"--shares-bps: {len(st.holders)} shares summing to 10000, in [settlement.holders] order")
    client = connect(eth, with_account=False)
    hub = to_checksum_address(args.hub) if args.hub else hub_account(eth, client).address
    client.account = load_keystore(args.keystore, args.password_file)
    factory = open_database(config)
    client.deployment_store = DeploymentStore(factory)
    if not client.has_code(contract):
        raise UsageError(f"no contract at {contract} on chain {client.chain_id}")
    beneficiary = args.beneficiary or demo.beneficiary or hub
    # the flags given override [settlement.demo]'s terms
    overrides = {name: value for name, value in (
        ("price_per_kwh_wei", args.price_per_kwh_wei), ("total_value_wei", args.total_value_wei),
        ("grace_period_s", args.grace_period_s), ("peak_power_w", args.peak_power_w),
        ("holder_peak_w", args.holder_peak_w)) if value is not None}
    ref, receipt = register_system(config, factory, client, contract, energy, dataclasses.replace(demo, **overrides),
                                   hub=hub, beneficiary=beneficiary, holders=st.holders, shares_bps=shares,
                                   demo=False)
    floor = client.log_floor(contract)
    print(ref.system_id)
    print(f"registered system {ref.system_id} on SolarProperty {to_checksum_address(contract)} (chain "
          f"{client.chain_id}, deployed in block {floor}) in block {receipt['blockNumber']}, transaction "
          f"0x{bytes(receipt['transactionHash']).hex()}, signed by {client.sender}: hub {hub}, beneficiary "
          f"{to_checksum_address(beneficiary)}, holders "
          + ", ".join(f"{p}={a} ({b} bps)" for (p, a), b in zip(st.holders.items(), shares))
          + f", channel root {ref.channel_root}; recorded in the hub's database (set settlement.system_id = "
          f"{ref.system_id})", file=sys.stderr)
    return 0


def cmd_chain_info(args: argparse.Namespace) -> int:
    """The system as the contract holds it, every view read at one block (settlement.solar_property)."""
    from settlement.chain import ContractReverted, connect
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.solar_property import SolarProperty
    from settlement.supply import Standing, decide

    config = load_config(args.config)
    eth = ethereum_settings(config)
    st = settlement_settings(config)
    from settlement.system import newest_system

    system = newest_system(open_existing(config))
    contract = eth.contract_address or (system.contract if system else None)
    if contract is None:
        raise UsageError("no contract: set ethereum.contract_address, or run `scb settlement` once")
    system_id = st.system_id or (system.system_id if system else 1)
    client = connect(eth, with_account=False)
    view = SolarProperty(client, contract, system_id).snapshot()
    try:
        info = view.system_info()
    except ContractReverted as exc:
        if exc.name == "UnknownSystem":
            raise UsageError(f"system {system_id} is not registered on SolarProperty {view.address} "
                             f"(chain {client.chain_id})") from None
        raise
    print(f"chain {client.chain_id}, SolarProperty {view.address}, system {system_id} "
          f"(block {view.block}, {utc_iso(view.block_timestamp())})")
    terms = (f"SolarProperty {view.version}: peak power {info.peak_power_w} W, repossession fee "
             f"{info.repossession_fee_bps} bps" if view.version >= 2 else
             f"SolarProperty {view.version}: no peak bounds, no dispute window")
    print(f"  beneficiary {info.beneficiary}, {info.holder_count} holders, registered {utc_iso(info.registered_at)}; "
          f"{terms}")
    print(f"  price {info.price_per_kwh_wei} wei/kWh, total value {info.total_value_wei} wei, "
          f"grace {info.grace_period_s} s, grid share {info.grid_share_bps} bps")
    print(f"  last period {info.last_period_id} "
          f"(ended {utc_iso(info.last_period_end) if info.last_period_end else '-'})")
    # party names are the hub's (the chain knows accounts only): only for the system the hub settles
    ours = system is not None and system.contract.lower() == view.address.lower() and system.system_id == system_id
    party_of = system.party_of if ours else {}
    for holder in view.holders():
        standing = Standing.of(party_of.get(holder.account.lower(), "-"), holder)
        decision, reason = decide(standing)
        print(f"  {standing.party:<8} {holder.account} {holder.status:<11} share {holder.share_bps} bps, "
              f"equity paid {holder.equity_paid_wei} of {holder.holding_value_wei} wei, debt {holder.debt_wei} wei, "
              f"deposit {holder.prepaid_wei} wei -> {decision} ({reason})")
    return 0


# ------------------------------------------------------------------------------------------------ approver (SolarProperty 2)


def _approver_commands(chain_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The approver's operations of SolarProperty 2 on the hub's system (docs/contract.md)."""
    cancel = chain_sub.add_parser("cancel-period", help="cancel a settled period within its grace (approver): its "
                                                        "bills are reversed and the hub settles it again")
    cancel.add_argument("period_id", type=int, metavar="PERIOD")
    assign = chain_sub.add_parser("assign-share", help="assign basis points of the grid portion to a new holder "
                                                       "(approver); map them in [settlement.holders] too")
    assign.add_argument("account", metavar="ACCOUNT")
    assign.add_argument("share_bps", type=int, metavar="BPS")
    assign.add_argument("--peak-w", type=int, help="the new holder's peak power (default: [settlement.demo] "
                                                   "holder_peak_w)")
    beneficiary = chain_sub.add_parser("set-beneficiary", help="hand the system's revenue to a new beneficiary "
                                                               "(the beneficiary or an approver)")
    beneficiary.add_argument("account", metavar="ACCOUNT")
    for parser, handler in ((cancel, cmd_cancel_period), (assign, cmd_assign_share),
                            (beneficiary, cmd_set_beneficiary)):
        parser.add_argument("--keystore", type=Path, metavar="FILE",
                            help="sign with this encrypted keystore (mode 0600; the approver's) instead of the hub "
                                 "account")
        parser.add_argument("--password-file", type=Path, metavar="FILE",
                            help="the keystore's password (a 0600 file: never on the command line)")
        parser.set_defaults(handler=handler)


def _system_view(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(client signing with --keystore or the hub account, the facade of the hub's system, configuration)."""
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.solar_property import SolarProperty
    from settlement.system import newest_system

    config = load_config(args.config)
    eth, st = ethereum_settings(config), settlement_settings(config)
    system = newest_system(open_existing(config))
    contract = eth.contract_address or (system.contract if system else None)
    if contract is None:
        raise UsageError("no contract: set ethereum.contract_address, or run `scb settlement` once")
    client = _signing_client(eth, args)
    return client, SolarProperty(client, contract, st.system_id or (system.system_id if system else 1)), st


def _done(client, receipt, what: str) -> int:  # type: ignore[no-untyped-def]
    print("0x" + bytes(receipt["transactionHash"]).hex())
    print(f"{what} in block {receipt['blockNumber']} (chain {client.chain_id}), signed by {client.sender}",
          file=sys.stderr)
    return 0


def cmd_cancel_period(args: argparse.Namespace) -> int:
    client, view, _ = _system_view(args)
    receipt = client.transact(view.cancel_period_call(args.period_id), f"cancelPeriod {args.period_id}")
    return _done(client, receipt, f"cancelled period {args.period_id} of system {view.system_id}: its bills are "
                                  "reversed; the hub's settlement settles it again")


def cmd_assign_share(args: argparse.Namespace) -> int:
    client, view, st = _system_view(args)
    peak = args.peak_w if args.peak_w is not None else st.demo.holder_peak_w
    receipt = client.transact(view.assign_share_call(args.account, args.share_bps, peak), "assignShare")
    return _done(client, receipt, f"assigned {args.share_bps} bps of system {view.system_id}'s grid portion to "
                                  f"{args.account} (peak {peak} W); map it in [settlement.holders] before the next "
                                  "settlement")


def cmd_set_beneficiary(args: argparse.Namespace) -> int:
    client, view, _ = _system_view(args)
    receipt = client.transact(view.set_beneficiary_call(args.account), "setBeneficiary")
    return _done(client, receipt, f"system {view.system_id}'s revenue now goes to {args.account}")
