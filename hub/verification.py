"""Verification by address and proof export: `scb verify`, `scb proof export` and the dashboard's verify button.

These span three components: the reading (energy_manager), the MAM message and the archive (mam_client), the
settlement and the chain (settlement). The checks themselves are `settlement.verify`; this module wires them to
the hub's database, its configuration and its peers, once, for the CLI and the dashboard alike.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scb.config import Config
from scb.db import open_existing
from scb.errors import Refused, TransportError, UsageError
from scb.timefmt import utc_iso

#: `verify_hub_address(factory=...)` default: open the hub's database if this machine has one
OPEN_HUB_DATABASE: Any = object()


def chain_view_factory(config: Config, rpc: str | None, factory: Any = None) -> Callable[[str, int], Any]:
    """contract, system id -> a read-only view of that system on the configured (or `rpc`) chain. With the hub's
    database (`factory`), log scans start at the deployment block stored there (settlement.logscan)."""
    from settlement.chain import ChainClient
    from settlement.logscan import DeploymentStore
    from settlement.settings import ethereum_settings
    from settlement.verify import ChainView

    eth = ethereum_settings(config)

    def make(contract: str, system_id: int) -> ChainView:
        client = ChainClient(eth, rpc_url=rpc)
        if factory is not None:
            client.deployment_store = DeploymentStore(factory)
        return ChainView(client, contract, system_id)

    return make


def _readings_lookup(factory: sessionmaker[Session], system_ref: int | None):  # type: ignore[no-untyped-def]
    """digest hex -> the hub's record of that reading (its id; period and proof once settled), for all of a
    message's digests in two queries instead of two per reading."""
    from energy_manager.models import StoredReading
    from settlement.models import SETTLED, ReadingProof, SettlementPeriod
    from settlement.verify import HubRecord

    def lookup(digests: list[str]) -> dict[str, HubRecord | None]:
        found: dict[str, HubRecord | None] = {d: None for d in digests}
        with factory() as session:
            readings = {r.id: r.digest for r in session.scalars(
                select(StoredReading).where(StoredReading.digest.in_(digests)))}
            for reading_id, digest in readings.items():
                found[digest] = HubRecord(reading_id, None, None, False)
            if not readings:
                return found
            query = (select(ReadingProof, SettlementPeriod)
                     .join(SettlementPeriod, SettlementPeriod.id == ReadingProof.period_ref)
                     .where(ReadingProof.reading_id.in_(list(readings)), SettlementPeriod.state == SETTLED))
            if system_ref is not None:
                query = query.where(SettlementPeriod.system_ref == system_ref)
            for proof, period in session.execute(query):
                record = found[readings[proof.reading_id]]
                if record is not None and record.period_id is None:  # the first settled proof found
                    found[readings[proof.reading_id]] = HubRecord(proof.reading_id, period.period_id,
                                                                  proof.siblings(), proof.late)
        return found

    return lookup


def verify_hub_address(config: Config, address: str, *, factory: Any = OPEN_HUB_DATABASE,
                       side_key: str | None = None, root: str | None = None, mode: str | None = None,
                       rpc: str | None = None, contract: str | None = None, system_id: int | None = None,
                       node: str | None = None, transport: Any = None):  # type: ignore[no-untyped-def]
    """`scb verify ADDRESS` as a function returning the Report, so the dashboard runs exactly the same verification.

    `factory`: the hub's session factory (the dashboard passes its own, open one), None for no hub database,
    default: open it when it exists. `transport`: the tangle node client (default: [iota] or `node`).
    """
    from eth_utils import to_checksum_address

    from energy_manager.settings import load_energy_settings
    from mam_client.archive import archive_reader, root_lookup
    from mam_client.service import make_transport
    from mam_client.settings import iota_settings, mam_settings
    from scb.files import read_secret_file
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.system import newest_system
    from settlement.verify import AddressContext, verify_address

    if factory is OPEN_HUB_DATABASE:
        factory = open_existing(config)
    contract = to_checksum_address(contract) if contract else None
    system = newest_system(factory, contract)
    if contract is None:
        contract = system.contract if system else ethereum_settings(config).contract_address
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
        iota = replace(iota, node_url=node)
    hub = factory is not None
    ctx = AddressContext(
        transport=transport if transport is not None else make_transport(iota),
        archive=archive_reader(factory) if hub else None, mode=mode, side_key=side_key,
        chain=chain_view_factory(config, rpc, factory)(contract, system_id), root=root,
        root_lookup=root_lookup(factory) if hub else None,
        readings_lookup=_readings_lookup(factory, system.ref if system else None) if hub else None)
    return verify_address(address, ctx)


def export_proof(factory: sessionmaker[Session], reading_id: int, mode: str) -> dict[str, Any]:
    """The proof file of a settled reading, from the hub's database alone."""
    from energy_manager.models import StoredReading
    from mam_client.models import OutboxMessage
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
                             f"{utc_iso(reading.ts_ms / 1000)} plus the lateness window)")
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


def hub_channel_mode(config: Config) -> str:
    """The mode of the channel the energy manager publishes to (restricted when it is not configured here)."""
    from energy_manager.settings import load_energy_settings
    from mam_client.settings import mam_settings

    channel = mam_settings(config).channels.get(load_energy_settings(config).channel)
    return channel.mode if channel else "restricted"


def verify_fleet_address(config: Config, address: str, fleet_url: str, *, side_key: str | None = None,
                         root: str | None = None, mode: str | None = None, rpc: str | None = None,
                         contract: str | None = None, system_id: int | None = None,
                         transport: Any = None):  # type: ignore[no-untyped-def]
    """`scb verify ADDRESS --fleet URL`: the same verification with the hub gone. The message, its root, the
    channel (bundles from the fleet's permanode, payloads as the archive) and the proofs come from the fleet; the
    roots come from the chain (`rpc` or [ethereum] rpc_url), so the fleet is trusted for nothing it could forge."""
    from eth_utils import to_checksum_address

    from hub.fleet.client import FleetClient
    from mam_client.service import make_transport
    from mam_client.settings import iota_settings
    from settlement.verify import AddressContext, HubRecord, Report, verify_address

    fleet = FleetClient(fleet_url)
    try:
        found = fleet.get(f"/api/v1/messages/{address}")
    except (TransportError, Refused) as exc:  # a verdict, like a node that cannot be reached
        from settlement.verify import CANNOT_CHECK, Step

        report = Report(f"address {address}")
        report.steps.append(Step("fleet", False, str(exc)))
        report.verdict, report.reason = CANNOT_CHECK, str(exc)
        return report
    messages = (found or {}).get("messages") or []
    system = (found or {}).get("system") or {}
    contract = to_checksum_address(contract) if contract else system.get("contract")
    if contract is None:
        raise UsageError(f"the fleet knows no settlement of the hub that published {address}: give --contract")
    system_id = system_id or system.get("system_id") or 1
    mode = mode or (messages[0].get("mode") if messages else None) or "restricted"
    roots = {m["address"]: m["root"] for m in messages}

    pages: dict[str, Any] = {address: found}  # the message's own page, fetched above: not asked for again

    def archive(at: str) -> list[str]:
        body = pages.pop(at) if at in pages else fleet.get(f"/api/v1/messages/{at}")
        return [m["payload"] for m in (body or {}).get("messages", [])]

    def root_lookup(at: str) -> str | None:
        return roots.get(at)

    def readings_lookup(digests: list[str]) -> dict[str, HubRecord | None]:
        # the fleet answers one reading's proof per request
        return {digest: reading_lookup(digest) for digest in digests}

    def reading_lookup(digest: str) -> HubRecord | None:
        body = fleet.get(f"/api/v1/proofs/{digest}")
        if body is None:
            return None
        proof = body.get("proof")
        if proof is None or proof.get("contract", "").lower() != contract.lower() \
                or proof.get("system_id") != system_id:
            return HubRecord(-1, None, None, False) if proof is None else None
        return HubRecord(-1, int(proof["period_id"]), [bytes.fromhex(s[2:]) for s in proof["siblings"]],
                         bool(proof["late"]))

    iota = replace(iota_settings(config), node_url=fleet.permanode_url)
    ctx = AddressContext(transport=transport if transport is not None else make_transport(iota), archive=archive,
                         mode=mode, side_key=side_key, chain=chain_view_factory(config, rpc)(contract, system_id),
                         root=root, root_lookup=root_lookup, root_source="the fleet",
                         readings_lookup=readings_lookup)
    report = verify_address(address, ctx)
    report.subject = f"address {address} (from the fleet at {fleet.base})"
    return report
