"""Storing one accepted batch: in one transaction, in the batch's order, idempotently.

What is checked before anything is stored (a batch that fails any check is refused whole, 400, nothing stored):
a reading's canonical bytes are a valid canonical reading of the uploading hub and hash to its digest; a message's
transactions hash to the hashes the hub sent and carry the message's address and bundle; hashes, roots and
addresses are trytes of the right length. Why check what a signed hub sends: the fleet serves these rows to
auditors as the hub's record (the permanode answers findTransactions from them); a hub's bug must not become the
fleet's answer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from energy_manager.reading import ReadingError, parse_canonical, reading_digest
from fleet.db import insert_ignore
from fleet.models import (
    FleetBatch,
    FleetDecision,
    FleetHub,
    FleetMessage,
    FleetProof,
    FleetReading,
    FleetSettlement,
    FleetTransaction,
)
from hub.fleet.protocol import BatchError, OpenedBatch
from mam_client.node import transaction as tx

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"0x[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass
class Receipt:
    hub: str
    seq: int
    replay: bool = False
    stored: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"hub": self.hub, "seq": self.seq, "replay": self.replay, "stored": self.stored}


def _int(item: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = item.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BatchError(f"{where}.{key} must be an integer")
    return value


def _str(item: dict[str, Any], key: str, where: str, *, pattern: re.Pattern[str] | None = None,
         trytes: int | None = None, optional: bool = False, max_len: int = 10_000_000) -> str | None:
    value = item.get(key)
    if value is None and optional:
        return None
    ok = isinstance(value, str) and len(value) <= max_len
    if ok and pattern is not None:
        ok = pattern.fullmatch(value) is not None
    if ok and trytes is not None:
        ok = tx.is_trytes(value, trytes)
    if not ok:
        raise BatchError(f"{where}.{key} is missing or malformed")
    return value


def hub_row(session: Session, account: str, name: str) -> FleetHub:
    """The hub of `account`, created on its first accepted upload (concurrent first uploads: one row)."""
    insert_ignore(session, FleetHub.__table__, [{"account": account, "name": name, "last_batch_seq": 0,
                                                 "first_seen": datetime.now(timezone.utc)}], ["account"])
    hub = session.scalars(select(FleetHub).where(FleetHub.account == account)).one()
    if hub.name != name:
        hub.name = name
    return hub


@dataclass
class Prepared:
    """A batch's rows, every item checked (`hub_ref` is added when they are stored: the hub's row may not exist
    before the batch is authorised)."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    #: hub message id, address, the digests of the readings it carries
    links: list[tuple[int, str, list[str]]] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)
    proofs: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> list[list[dict[str, Any]]]:
        return [self.readings, self.messages, self.transactions, self.settlements, self.proofs, self.decisions]


def prepare(batch: dict[str, Any]) -> Prepared:
    """Check every item of `batch` and build its rows (pure: no database). Raises BatchError on the first bad one."""
    out = Prepared()
    hub_id = batch["hub"]
    for i, item in enumerate(batch["items"]):
        kind = item["kind"]
        if kind == "reading":
            out.readings.append(_reading(hub_id, i, item))
        elif kind == "message":
            message, txs, digests = _message(i, item)
            out.messages.append(message)
            out.transactions += txs
            out.links.append((message["hub_message_id"], message["address"], digests))
        elif kind == "settlement":
            out.settlements.append(_settlement(i, item))
        elif kind == "proof":
            out.proofs.append(_proof(i, item))
        else:
            out.decisions.append(_decision(i, item))
    return out


def check_upload(body: bytes) -> tuple[OpenedBatch, Prepared]:
    """Everything about an upload that needs no database: JSON, signature, every item. Runs in the server's
    database threads, off its event loop (fleet.server `Fleet.check` says why threads and not processes)."""
    from hub.fleet.protocol import open_envelope
    from scb import safejson

    try:
        envelope = safejson.loads(body)
    except (ValueError, RecursionError):
        raise BatchError("the body is not JSON") from None
    opened = open_envelope(envelope)
    return opened, prepare(opened.batch)


def ingest(session: Session, opened: OpenedBatch, rows: Prepared) -> Receipt:
    """Store `opened` (checked and authorised; `rows`: its rows, from `check_upload`) in the caller's transaction."""
    batch = opened.batch
    hub = hub_row(session, opened.signer, batch["hub"])
    receipt = Receipt(hub=opened.signer, seq=batch["seq"])
    first = insert_ignore(session, FleetBatch.__table__, [{
        "hub_ref": hub.id, "seq": batch["seq"], "digest": "0x" + opened.digest.hex(), "items": len(batch["items"]),
        "stored": 0, "received_at": datetime.now(timezone.utc)}], ["hub_ref", "digest"])
    if not first:
        receipt.replay = True
        return receipt
    for table in rows.tables():
        for row in table:
            row["hub_ref"] = hub.id
    readings = rows.readings
    # a reading uploaded after its message knows its address from the message row
    wanted = {r["hub_message_id"] for r in readings if r["address"] is None and r["hub_message_id"] is not None}
    if wanted:
        known = dict(session.execute(select(FleetMessage.hub_message_id, FleetMessage.address)
                                     .where(FleetMessage.hub_ref == hub.id,
                                            FleetMessage.hub_message_id.in_(wanted))).all())
        for r in readings:
            if r["address"] is None and r["hub_message_id"] in known:
                r["address"] = known[r["hub_message_id"]]
    stored = receipt.stored
    stored["reading"] = insert_ignore(session, FleetReading.__table__, readings, ["hub_ref", "digest"])
    stored["message"] = insert_ignore(session, FleetMessage.__table__, rows.messages, ["hub_ref", "hub_message_id"])
    insert_ignore(session, FleetTransaction.__table__, rows.transactions, ["hash"])
    # a message uploaded after its readings gives them their address
    for message_id, address, digests in rows.links:
        if digests:
            session.execute(update(FleetReading)
                            .where(FleetReading.hub_ref == hub.id, FleetReading.digest.in_(digests),
                                   FleetReading.address.is_(None))
                            .values(address=address, hub_message_id=message_id))
    stored["settlement"] = insert_ignore(session, FleetSettlement.__table__, rows.settlements,
                                         ["hub_ref", "chain_id", "contract", "system_id", "period_id"])
    stored["proof"] = insert_ignore(session, FleetProof.__table__, rows.proofs, ["hub_ref", "digest"])
    stored["decision"] = insert_ignore(session, FleetDecision.__table__, rows.decisions,
                                       ["hub_ref", "hub_decision_id"])
    heartbeat = batch.get("heartbeat")
    hub.last_upload_at = datetime.now(timezone.utc)
    hub.last_batch_seq = max(int(hub.last_batch_seq or 0), batch["seq"])
    if heartbeat is not None:
        sent = heartbeat.get("sent_at_ms") if isinstance(heartbeat.get("sent_at_ms"), int) else batch["sent_at_ms"]
        if hub.heartbeat_ms is None or sent >= hub.heartbeat_ms:  # a replayed older heartbeat changes nothing
            hub.heartbeat_ms = sent
            hub.heartbeat_json = json.dumps(heartbeat, sort_keys=True)
            backlog = heartbeat.get("upload_backlog")
            hub.upload_backlog = backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None
    session.execute(update(FleetBatch).where(FleetBatch.hub_ref == hub.id,
                                             FleetBatch.digest == "0x" + opened.digest.hex())
                    .values(stored=sum(stored.values())))
    return receipt


def _reading(hub_id: str, i: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"batch.items[{i}]"
    canonical_text = _str(item, "canonical", where, max_len=4096)
    digest = _str(item, "digest", where, pattern=_HEX64)
    assert canonical_text is not None and digest is not None
    try:
        canonical = canonical_text.encode("ascii")
        reading = parse_canonical(canonical)
    except (UnicodeEncodeError, ReadingError) as exc:
        raise BatchError(f"{where}.canonical is not a canonical reading: {exc}") from None
    if reading_digest(canonical).hex() != digest:
        raise BatchError(f"{where}: the canonical bytes do not hash to the digest {digest}")
    if reading.hub != hub_id:
        raise BatchError(f"{where}: a reading of hub {reading.hub!r} in a batch of hub {hub_id!r}")
    return {"hub_reading_id": _int(item, "id", where), "digest": digest, "canonical": canonical,
            "meter": reading.meter, "party": reading.party, "circuit": reading.circuit, "seq": reading.seq,
            "ts_ms": reading.ts_ms, "register_wh": reading.register_wh, "power_w": reading.power_w,
            "delta_wh": _int(item, "delta_wh", where), "flags": _str(item, "flags", where, max_len=64),
            "hub_message_id": _int(item, "message_id", where, optional=True),
            "address": _str(item, "address", where, trytes=81, optional=True)}


def _message(i: int, item: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    where = f"batch.items[{i}]"
    address = _str(item, "address", where, trytes=81)
    bundle_hash = _str(item, "bundle_hash", where, trytes=81, optional=True)
    hashes, trytes = item.get("tx_hashes"), item.get("bundle_trytes")
    if not isinstance(hashes, list) or not isinstance(trytes, list) or len(hashes) != len(trytes):
        raise BatchError(f"{where}: tx_hashes and bundle_trytes must be lists of the same length")
    txs = []
    for k, (h, t) in enumerate(zip(hashes, trytes)):
        if not tx.is_trytes(t, tx.TRANSACTION_TRYTES):
            raise BatchError(f"{where}.bundle_trytes[{k}] is not a transaction of {tx.TRANSACTION_TRYTES} trytes")
        parsed = tx.parse(t)
        if parsed.hash != h or parsed.address != address or (bundle_hash and parsed.bundle != bundle_hash):
            raise BatchError(f"{where}.bundle_trytes[{k}] is not transaction {str(h)[:81]} of the message's "
                             "address and bundle")
        txs.append({"hash": parsed.hash, "address": parsed.address, "bundle": parsed.bundle, "trytes": t})
    digests = item.get("readings")
    if not isinstance(digests, list) or not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in digests):
        raise BatchError(f"{where}.readings must be a list of reading digests")
    mode = item.get("mode")
    if mode not in (None, "public", "private", "restricted"):
        raise BatchError(f"{where}.mode must be public, private or restricted")
    return ({"hub_message_id": _int(item, "id", where),
             "channel": _str(item, "channel", where, max_len=64), "mode": mode,
             "root": _str(item, "root", where, trytes=81), "address": address,
             "next_root": _str(item, "next_root", where, trytes=81, optional=True),
             "payload": _str(item, "payload", where), "bundle_hash": bundle_hash, "reading_count": len(digests),
             "attached_at_ms": _int(item, "attached_at_ms", where, optional=True)}, txs, digests)


def _system(item: dict[str, Any], where: str) -> dict[str, Any]:
    return {"chain_id": _int(item, "chain_id", where), "contract": _str(item, "contract", where, pattern=_ADDRESS),
            "system_id": _int(item, "system_id", where)}


def _settlement(i: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"batch.items[{i}]"
    consumption, holders = item.get("consumption"), item.get("holders")
    if not isinstance(consumption, list) or not isinstance(holders, dict):
        raise BatchError(f"{where}: consumption must be a list and holders an object")
    return {**_system(item, where), "period_id": _int(item, "period_id", where),
            "start_s": _int(item, "start_s", where), "end_s": _int(item, "end_s", where),
            "readings_root": _str(item, "readings_root", where, pattern=_HEX32),
            "mam_root": _str(item, "mam_root", where, trytes=81),
            "reading_count": _int(item, "reading_count", where), "late_count": _int(item, "late_count", where),
            "generation_wh": _int(item, "generation_wh", where), "consumption_json": json.dumps(consumption),
            "tx_hash": _str(item, "tx_hash", where, pattern=_TX_HASH, optional=True),
            "block_number": _int(item, "block_number", where, optional=True),
            "channel_root": _str(item, "channel_root", where, trytes=81), "holders_json": json.dumps(holders),
            "settled_at_ms": _int(item, "settled_at_ms", where, optional=True)}


def _proof(i: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"batch.items[{i}]"
    siblings = item.get("proof")
    if not isinstance(siblings, list) or len(siblings) > 64 or \
            not all(isinstance(s, str) and _HEX32.fullmatch(s) for s in siblings):
        raise BatchError(f"{where}.proof must be a list of 32-byte hex hashes")
    return {"digest": _str(item, "digest", where, pattern=_HEX64), **_system(item, where),
            "period_id": _int(item, "period_id", where), "proof": b"".join(bytes.fromhex(s[2:]) for s in siblings),
            "late": bool(item.get("late"))}


def _decision(i: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"batch.items[{i}]"
    return {"hub_decision_id": _int(item, "id", where), **_system(item, where),
            "party": _str(item, "party", where, max_len=64), "account": _str(item, "account", where, pattern=_ADDRESS),
            "decision": _str(item, "decision", where, max_len=16), "reason": _str(item, "reason", where),
            "status": _str(item, "status", where, max_len=16),
            "prepaid_wei": _str(item, "prepaid_wei", where, max_len=80),
            "debt_wei": _str(item, "debt_wei", where, max_len=80),
            "next_due": _int(item, "next_due", where, optional=True),
            "block_number": _int(item, "block_number", where),
            "decided_at_ms": _int(item, "decided_at_ms", where, optional=True), "applied": bool(item.get("applied"))}
