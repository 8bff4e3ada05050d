"""Verification by address and proof export: `scb verify`, `scb proof export` and the dashboard's verify button.

These span three components: the reading (energy_manager), the MAM message and the archive (mam_client), the
settlement and the chain (settlement). The checks themselves are `settlement.verify`; this module wires them to
the hub's database, its configuration and its peers, once, for the CLI and the dashboard alike.

`scb verify ADDRESS` answers within a second on the local stack (issue 16), so its path imports none of web3,
eth_account, PyOTA or (on a SQLite hub) SQLAlchemy: the chain is read through settlement.rpc, the tangle node
through mam_client.tangle_reader, the hub's database with the plain SQL of hub.verify_records.
tests/settlement/test_verify.py (`HEAVY`) keeps it so.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scb.config import Config
from scb.errors import Refused, TransportError, UsageError
from scb.timefmt import utc_iso

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from hub.verify_records import Rows

#: `verify_hub_address(factory=...)` default: open the hub's database if this machine has one
OPEN_HUB_DATABASE: Any = object()


def chain_view_factory(config: Config, rpc: str | None, rows: Rows | None = None) -> Callable[[str, int], Any]:
    """contract, system id -> a read-only view of that system on the configured (or `rpc`) chain. With the hub's
    database (`rows`), log scans start at the deployment block stored there (settlement.logscan)."""
    from hub.verify_records import DeploymentBlocks
    from settlement.chain import ChainClient
    from settlement.settings import ethereum_settings
    from settlement.verify import ChainView

    eth = ethereum_settings(config)

    def make(contract: str, system_id: int) -> ChainView:
        client = ChainClient(eth, rpc_url=rpc)
        if rows is not None:
            client.deployment_store = DeploymentBlocks(rows)
        return ChainView(client, contract, system_id)

    return make


@contextmanager
def hub_records(config: Config, factory: Any = OPEN_HUB_DATABASE) -> Iterator[Rows | None]:
    """The hub's database to read from during one verification (hub.verify_records), None without one.

    `factory`: a session factory (the dashboard's) or None (no hub database); by default the configured database
    when this machine has one: on SQLite a read-only sqlite3 connection (no SQLAlchemy import, and never the
    writers' lock), on a server database scb.db's session factory."""
    from hub.verify_records import session_rows, sqlite_rows
    from scb.sqlite_reader import connect_read_only, sqlite_path

    if factory is not OPEN_HUB_DATABASE:
        yield session_rows(factory) if factory is not None else None
        return
    path = sqlite_path(config.database_url)
    if path is None:
        from scb.db import open_existing

        opened = open_existing(config)
        yield session_rows(opened) if opened is not None else None
        return
    if not path.exists():  # not a hub (an auditor's machine): work from the flags alone
        yield None
        return
    conn = connect_read_only(path, config.sqlite_busy_timeout_ms)
    try:
        yield sqlite_rows(conn)
    finally:
        conn.close()


def tangle_reader(iota: Any) -> Any:
    """The tangle node as verification reads it (findTransactions, getTrytes), from [iota]."""
    from mam_client.tangle_reader import TangleReader

    return TangleReader(iota.node_url, timeout_s=iota.timeout_s)


def verify_hub_address(config: Config, address: str, *, factory: Any = OPEN_HUB_DATABASE,
                       side_key: str | None = None, root: str | None = None, mode: str | None = None,
                       rpc: str | None = None, contract: str | None = None, system_id: int | None = None,
                       node: str | None = None, transport: Any = None):  # type: ignore[no-untyped-def]
    """`scb verify ADDRESS` as a function returning the Report, so the dashboard runs exactly the same verification.

    `factory`: the hub's session factory (the dashboard passes its own, open one), None for no hub database,
    default: open it when it exists (see `hub_records`). `transport`: the tangle node client (default: [iota] or
    `node`).
    """
    from energy_manager.settings import load_energy_settings
    from hub.verify_records import archive, newest_system, readings_lookup, root_lookup
    from mam_client.settings import iota_settings, mam_settings
    from scb.files import read_secret_file
    from settlement.abi import to_checksum_address
    from settlement.settings import ethereum_settings, settlement_settings
    from settlement.verify import AddressContext, verify_address

    contract = to_checksum_address(contract) if contract else None
    with hub_records(config, factory) as rows:
        system = newest_system(rows, contract) if rows is not None else None
        if contract is None:
            contract = system.contract if system else ethereum_settings(config).contract_address
        if contract is None:
            raise UsageError("which contract? give --contract (no hub database here and no "
                             "ethereum.contract_address)")
        system_id = system_id or (system.system_id if system else None) or settlement_settings(config).system_id or 1
        channel = mam_settings(config).channels.get(load_energy_settings(config).channel)
        mode = mode or (channel.mode if channel else "restricted")
        if side_key is None and mode == "restricted" and channel is not None and channel.side_key_file is not None \
                and channel.side_key_file.exists():
            side_key = read_secret_file(channel.side_key_file, f"side key of channel {channel.name}")
        iota = iota_settings(config)
        if node:
            iota = replace(iota, node_url=node)
        ctx = AddressContext(
            transport=transport if transport is not None else tangle_reader(iota),
            archive=archive(rows) if rows is not None else None, mode=mode, side_key=side_key,
            chain=chain_view_factory(config, rpc, rows)(contract, system_id), root=root,
            root_lookup=root_lookup(rows) if rows is not None else None,
            readings_lookup=readings_lookup(rows, system.ref if system else None) if rows is not None else None)
        return verify_address(address, ctx)


def export_proof(factory: sessionmaker[Session], reading_id: int, mode: str) -> dict[str, Any]:
    """The proof file of a settled reading, from the hub's database alone."""
    from sqlalchemy import select

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
    from hub.fleet.client import FleetClient
    from mam_client.settings import iota_settings
    from settlement.abi import to_checksum_address
    from settlement.verify import AddressContext, HubRecord, ReadingKey, Report, verify_address

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

    def readings_lookup(keys: list[ReadingKey]) -> dict[str, HubRecord | None]:
        # the fleet answers one reading's proof per request, by its digest (the fleet's own index)
        return {key.digest: reading_lookup(key.digest) for key in keys}

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
    ctx = AddressContext(transport=transport if transport is not None else tangle_reader(iota), archive=archive,
                         mode=mode, side_key=side_key, chain=chain_view_factory(config, rpc)(contract, system_id),
                         root=root, root_lookup=root_lookup, root_source="the fleet",
                         readings_lookup=readings_lookup)
    report = verify_address(address, ctx)
    report.subject = f"address {address} (from the fleet at {fleet.base})"
    return report
