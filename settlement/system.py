"""Which system on which contract this hub settles, and the embedded default's one-time bootstrap.

Production: an approver deployed SolarProperty and registered the system; the hub is configured with
`[ethereum] contract_address`, `[settlement] system_id` and the holder map `[settlement.holders]`, and this module
only checks them against the chain (the hub must hold the system's hub role; every holder on chain must be mapped
to a party, else consumption would go unbilled).

Embedded default (a local anvil and no contract configured): the hub deploys SolarProperty once from the committed
artifact, with its own account as admin and approver, and registers a demo system: hub = that account, holders =
the next development accounts, one per demo household of `[energy] households`, the MAM channel root = the first
root of the energy manager's channel. The result is remembered in the database (`settlement_systems`), so a
restart reuses it; if the local chain was reset (the contract has no code any more) it is deployed again.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.settings import EnergySettings
from mam_client.channels import ensure_channel
from mam_client.settings import mam_settings
from settlement.abi import keccak, to_checksum_address
from settlement.chain import ChainClient, ContractReverted, dev_account
from settlement.models import SettlementSystem, latest_system
from settlement.solar_property import SolarProperty, events_in, register_system_call
from settlement.settings import DemoSystem, EthereumSettings, SettlementSettings
from settlement.signing import create_address
from scb.config import Config
from scb.db import transaction
from scb.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemRef:
    """A system as the jobs use it (a detached copy of its row)."""

    ref: int
    chain_id: int
    contract: str
    system_id: int
    hub: str
    channel: str
    channel_root: str
    holders: dict[str, str]  # party -> account (checksummed)
    demo: bool

    @property
    def party_of(self) -> dict[str, str]:
        """lowercase account -> party"""
        return {account.lower(): party for party, account in self.holders.items()}

    @classmethod
    def of(cls, row: SettlementSystem) -> SystemRef:
        return cls(ref=row.id, chain_id=row.chain_id, contract=row.contract, system_id=row.system_id, hub=row.hub,
                   channel=row.channel, channel_root=row.channel_root, holders=json.loads(row.holders_json),
                   demo=row.demo)


def newest_system(factory: sessionmaker[Session] | None, contract: str | None = None) -> SystemRef | None:
    """The newest system this hub settles (optionally on `contract`) as a detached `SystemRef`; None without a hub
    database (`factory` None) or before a system is registered."""
    if factory is None:
        return None
    with factory() as session:
        row = latest_system(session, contract)
        return SystemRef.of(row) if row is not None else None


def equal_shares(n: int) -> list[int]:
    """n shares in basis points summing to 10000; the first holders get the remainder."""
    base, rest = divmod(10_000, n)
    return [base + (1 if i < rest else 0) for i in range(n)]


def demo_holders(energy: EnergySettings) -> dict[str, str]:
    """The demo households mapped to development accounts 1, 2, ... (account 0 is the hub)."""
    return {party: dev_account(i + 1).address for i, party in enumerate(energy.community.households)}


def channel_first_root(config: Config, factory: sessionmaker[Session], channel: str) -> str:
    """The first root of the energy manager's MAM channel, creating the channel (seed, side key, row) if needed,
    exactly as the publisher would."""
    channels = mam_settings(config).channels
    if channel not in channels:
        raise ConfigError(f"energy.channel {channel!r} is not a configured MAM channel ({', '.join(channels)})")
    with transaction(factory) as session:
        return ensure_channel(session, channels[channel]).first_root


def _stored(session: Session, chain_id: int, contract: str | None, system_id: int | None) -> SettlementSystem | None:
    query = select(SettlementSystem).where(SettlementSystem.chain_id == chain_id)
    if contract is not None:
        query = query.where(SettlementSystem.contract == to_checksum_address(contract))
    if system_id is not None:
        query = query.where(SettlementSystem.system_id == system_id)
    return session.scalars(query.order_by(SettlementSystem.id.desc()).limit(1)).first()


def deploy_contract(client: ChainClient, admin: str | None = None, approver: str | None = None) -> str:
    """Deploy SolarProperty, the current version (2), from the committed artifact (admin and approver default to
    the hub account). A system on a version-1 contract is adopted and read as it is, never redeployed."""
    address = client.deploy(admin or client.sender, approver or client.sender)
    log.info("deployed SolarProperty at %s on chain %d", address, client.chain_id)
    return address


def _remember(factory: sessionmaker[Session], client: ChainClient, contract: str, system_id: int, *, hub: str,
              channel: str, root: str, holders: dict[str, str], demo: bool,
              registered_tx: str | None = None) -> SystemRef:
    """Record the system this hub settles (a `settlement_systems` row) and return it as a SystemRef."""
    with transaction(factory) as session:
        row = SettlementSystem(chain_id=client.chain_id, contract=to_checksum_address(contract), system_id=system_id,
                               hub=hub, channel=channel, channel_root=root,
                               holders_json=json.dumps({p: to_checksum_address(a) for p, a in holders.items()}),
                               demo=demo, registered_tx=registered_tx)
        session.add(row)
        session.flush()
        return SystemRef.of(row)


def register_system(config: Config, factory: sessionmaker[Session], client: ChainClient, contract: str,
                    energy: EnergySettings, terms: DemoSystem, *, hub: str, beneficiary: str,
                    holders: dict[str, str], shares_bps: Sequence[int], demo: bool) -> tuple[SystemRef, dict[str, Any]]:
    """Register a system on `contract`, signed by `client`'s account (the approver): `terms` (price, value, grace,
    peak powers, repossession fee), `holders` (party -> account, in holder order) with `shares_bps`, the MAM
    channel root = the first root of `energy.channel`; remembered in the database. Returns (its SystemRef, the
    registration receipt)."""
    root = channel_first_root(config, factory, energy.channel)
    accounts = [to_checksum_address(a) for a in holders.values()]
    receipt = client.transact(
        register_system_call(contract, hub=hub, beneficiary=beneficiary, price_per_kwh_wei=terms.price_per_kwh_wei,
                             total_value_wei=terms.total_value_wei, grace_period_s=terms.grace_period_s,
                             peak_power_w=terms.peak_power_w, repossession_fee_bps=terms.repossession_fee_bps,
                             mam_channel_root=root, holders=accounts, shares_bps=shares_bps,
                             holder_peaks_w=[terms.holder_peak_w] * len(accounts)),
        "registerSystem")
    registered = events_in(client, contract, "SystemRegistered", receipt["logs"])[0]
    system_id = int(registered.args["systemId"])
    ref = _remember(factory, client, contract, system_id, hub=hub, channel=energy.channel, root=root,
                    holders=holders, demo=demo, registered_tx="0x" + bytes(receipt["transactionHash"]).hex())
    return ref, receipt


def register_demo(config: Config, factory: sessionmaker[Session], client: ChainClient, contract: str,
                  energy: EnergySettings, settings: SettlementSettings) -> SystemRef:
    """Register the demo system on `contract` and remember it."""
    demo = settings.demo
    holders = settings.holders or demo_holders(energy)
    shares = list(demo.shares_bps) or equal_shares(len(holders))
    if len(shares) != len(holders):
        raise ConfigError(f"settlement.demo.shares_bps has {len(shares)} entries for {len(holders)} holders")
    ref, _ = register_system(config, factory, client, contract, energy, demo, hub=client.sender,
                             beneficiary=demo.beneficiary or client.sender, holders=holders, shares_bps=shares,
                             demo=True)
    log.info("registered demo system %d on %s: holders %s, channel root %s", ref.system_id, contract,
             ", ".join(f"{p}={a}" for p, a in ref.holders.items()), ref.channel_root)
    return ref


def resolve_system(config: Config, factory: sessionmaker[Session], client: ChainClient, eth: EthereumSettings,
                   settings: SettlementSettings, energy: EnergySettings) -> SystemRef:
    """The system this hub settles: configured, remembered, or (development chain) bootstrapped now."""
    chain_id = client.chain_id
    with factory() as session:
        row = _stored(session, chain_id, eth.contract_address, settings.system_id)
        stored = SystemRef.of(row) if row is not None else None
    if stored is not None and client.has_code(stored.contract):
        if settings.holders and {p: a.lower() for p, a in settings.holders.items()} != \
                {p: a.lower() for p, a in stored.holders.items()}:
            stored = _update_holders(factory, stored, settings.holders)
        return stored
    if eth.contract_address is not None and settings.system_id is not None:
        return _adopt_configured(config, factory, client, eth.contract_address, settings.system_id, settings, energy)
    if not client.is_dev_chain():
        raise ConfigError("set ethereum.contract_address and settlement.system_id (the system an approver "
                          "registered for this hub), or run `scb chain deploy` on a development chain")
    contract = eth.contract_address
    if contract is None:
        if stored is not None:
            log.warning("contract %s recorded in the database has no code on chain %d (the local chain was reset); "
                        "deploying a new one", stored.contract, chain_id)
        _skip_known_addresses(factory, client)
        contract = deploy_contract(client)
    elif not client.has_code(contract):
        raise ConfigError(f"ethereum.contract_address {contract} has no contract code on chain {chain_id}")
    return register_demo(config, factory, client, contract, energy, settings)


def _skip_known_addresses(factory: sessionmaker[Session], client: ChainClient) -> None:
    """A reset development chain starts the hub account's nonces at 0 again, so a new deployment would land at the
    address of a contract the database remembers from before the reset (and its periods, decisions and proofs
    would seem to belong to the new one). Use up nonces until the next deployment's address is new."""
    with factory() as session:
        known = set(session.scalars(select(SettlementSystem.contract)
                                    .where(SettlementSystem.chain_id == client.chain_id)))
    while create_address(client.sender, client.next_nonce()) in known:
        client.burn_nonce("skip an address the database knows from before the chain was reset")


def _update_holders(factory: sessionmaker[Session], stored: SystemRef, holders: dict[str, str]) -> SystemRef:
    with transaction(factory) as session:
        row = session.get(SettlementSystem, stored.ref)
        assert row is not None
        row.holders_json = json.dumps({p: to_checksum_address(a) for p, a in holders.items()})
        return SystemRef.of(row)


def _adopt_configured(config: Config, factory: sessionmaker[Session], client: ChainClient, contract: str,
                      system_id: int, settings: SettlementSettings, energy: EnergySettings) -> SystemRef:
    """Check a configured system against the chain and remember it."""
    if not client.has_code(contract):
        raise ConfigError(f"ethereum.contract_address {contract} has no contract code on chain {client.chain_id}")
    view = SolarProperty(client, contract, system_id).snapshot()  # every check against the same block
    try:
        info = view.system_info()
        accounts = [h.account for h in view.holder_list()]
    except ContractReverted as exc:
        raise ConfigError(f"settlement.system_id {system_id}: {exc}") from None
    if not view.is_hub(client.sender):
        raise ConfigError(f"the hub account {client.sender} does not hold the hub role of system {system_id} on "
                          f"{contract}: ask the approver to grant it")
    mapped = {a.lower() for a in settings.holders.values()}
    unmapped = [a for a in accounts if a.lower() not in mapped]
    if unmapped:
        raise ConfigError(f"holder(s) {', '.join(unmapped)} of system {system_id} have no party in "
                          "[settlement.holders]; their consumption could not be billed")
    root = channel_first_root(config, factory, energy.channel)
    if info.mam_channel_root_hash != keccak(root.encode("utf-8")):
        raise ConfigError(f"system {system_id} was registered with another MAM channel root than the first root "
                          f"of channel {energy.channel!r} ({root}); configure the channel it was registered with")
    return _remember(factory, client, contract, system_id, hub=client.sender, channel=energy.channel, root=root,
                     holders=settings.holders, demo=False)
