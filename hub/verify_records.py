"""What `scb verify` reads from the hub's database, in plain SQL: the system, roots, archived payloads, proofs.

Why SQL text and not the models: on SQLite the command reads with plain sqlite3 (scb.sqlite_reader), as the
supervisor does, because importing SQLAlchemy and the models costs `scb verify` about 0.4 s of its one-second
budget (issue 16). The same statements run through SQLAlchemy (`text`) where a session factory exists anyway
(the dashboard, a PostgreSQL hub), so each question has one query. Verification only reads: it never writes the
hub's database (nor waits for its writers' lock).

The statements name the tables and columns of `energy_manager.models`, `mam_client.models` and
`settlement.models`; tests/settlement/test_verify_records.py checks them against the models' queries on each kind.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mam_client.stored_trytes import unpack
from scb.errors import DatabaseUnavailable
from settlement.logscan import DeploymentStore
from settlement.verify import HubRecord, ReadingKey

#: settlement.models.SETTLED (the models import SQLAlchemy; a test checks the two agree)
SETTLED = "settled"
#: mam_client.models.PAYLOAD, the part of mam_message_bodies that holds a message's payload (the same test)
PAYLOAD = "payload"


class Rows(Protocol):
    """One read-only SQL statement with `:name` parameters -> its rows."""

    def __call__(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...


def sqlite_rows(conn: sqlite3.Connection) -> Rows:
    """Rows from a read-only sqlite3 connection (scb.sqlite_reader.connect_read_only)."""

    def rows(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in conn.execute(sql, dict(params)).fetchall()]
        except sqlite3.Error as exc:  # locked beyond the busy timeout, or a schema older than this SCB
            raise DatabaseUnavailable(f"the hub's database cannot be read: {exc} (is it migrated? `scb db "
                                      "upgrade`)") from None

    return rows


def session_rows(factory: Any) -> Rows:
    """Rows through a SQLAlchemy session factory (the dashboard's, or a PostgreSQL hub's)."""
    from sqlalchemy import text

    def rows(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        with factory() as session:
            return [tuple(r) for r in session.execute(text(sql), dict(params)).all()]

    return rows


def _in(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`:name0, :name1 ...` and their parameters, for an IN list (neither driver expands a sequence)."""
    params = {f"{name}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{k}" for k in params), params


@dataclass(frozen=True)
class HubSystem:
    """The newest system the hub settles: its row id, contract and id on chain."""

    ref: int
    contract: str
    system_id: int


def newest_system(rows: Rows, contract: str | None = None) -> HubSystem | None:
    """settlement.models.latest_system, as a verify needs it."""
    sql = "SELECT id, contract, system_id FROM settlement_systems"
    params: dict[str, Any] = {}
    if contract:
        sql, params = sql + " WHERE contract = :contract", {"contract": contract}
    found = rows(sql + " ORDER BY id DESC LIMIT 1", params)
    return HubSystem(int(found[0][0]), str(found[0][1]), int(found[0][2])) if found else None


def archive(rows: Rows) -> Callable[[str], list[str]]:
    """address -> the payloads the hub published there (mam_client.archive.archive_reader)."""

    def read(address: str) -> list[str]:
        found = rows("SELECT b.data FROM mam_messages m JOIN mam_message_bodies b ON b.message_id = m.id "
                     "AND b.part = :part WHERE m.address = :address ORDER BY m.id",
                     {"address": address, "part": PAYLOAD})
        return [unpack(r[0]) for r in found]

    return read


def root_lookup(rows: Rows) -> Callable[[str], str | None]:
    """address -> the MAM root the hub signed its message there under (mam_client.archive.root_lookup)."""

    def lookup(address: str) -> str | None:
        found = rows("SELECT root FROM mam_messages WHERE address = :address AND root IS NOT NULL ORDER BY id "
                     "LIMIT 1", {"address": address})
        return str(found[0][0]) if found else None

    return lookup


def readings_lookup(rows: Rows, system_ref: int | None) -> Callable[[list[ReadingKey]], dict[str, HubRecord | None]]:
    """digest hex -> the hub's record of that reading, for all of a message's readings in two queries.

    A reading is found by its time (the index of timestamps) and (hub, meter, seq), its unique key, and is the
    hub's only if its stored digest is the one asked for: a reading changed after it left the hub can have the
    key of the hub's own and another digest."""

    def lookup(keys: list[ReadingKey]) -> dict[str, HubRecord | None]:
        found: dict[str, HubRecord | None] = {k.digest: None for k in keys}
        if not keys:
            return found
        # OR of equalities rather than a row-value IN: each term is a lookup in the index of timestamps on SQLite
        # and PostgreSQL alike
        terms, params = [], {}
        for i, key in enumerate(keys):
            terms.append(f"(ts_ms = :t{i} AND hub = :h{i} AND meter = :m{i} AND seq = :s{i})")
            params.update({f"t{i}": key.ts_ms, f"h{i}": key.hub, f"m{i}": key.meter, f"s{i}": key.seq})
        wanted = set(found)
        readings = {int(r[0]): str(r[1]) for r in rows(
            f"SELECT id, digest FROM energy_readings WHERE {' OR '.join(terms)}", params) if str(r[1]) in wanted}
        for reading_id, digest in readings.items():
            found[digest] = HubRecord(reading_id, None, None, False)
        if not readings:
            return found
        marks, params = _in("r", list(readings))
        sql = (f"SELECT p.reading_id, sp.period_id, p.proof, p.late FROM settlement_proofs p "
               f"JOIN settlement_periods sp ON sp.id = p.period_ref "
               f"WHERE p.reading_id IN ({marks}) AND sp.state = :settled")
        params["settled"] = SETTLED
        if system_ref is not None:
            sql, params["system_ref"] = sql + " AND sp.system_ref = :system_ref", system_ref
        for reading_id, period_id, proof, late in rows(sql, params):
            raw = bytes(proof)
            found[readings[int(reading_id)]] = HubRecord(int(reading_id), int(period_id),
                                                             [raw[i:i + 32] for i in range(0, len(raw), 32)],
                                                             bool(late))
        return found

    return lookup


class DeploymentBlocks(DeploymentStore):
    """settlement.logscan.DeploymentStore read-only: the deployment blocks the settlement service stored.
    `save` does nothing: a verify finds a missing one again (one eth_call on a version-2 contract) rather than
    write the hub's database."""

    def __init__(self, rows: Rows) -> None:
        super().__init__(None)
        self.rows = rows

    def load(self, chain_id: int, address: str) -> int | None:
        found = self.rows("SELECT value_json FROM settlement_state WHERE key = :key",
                          {"key": self.key(chain_id, address)})
        try:
            value = json.loads(found[0][0]) if found else None
        except ValueError:
            return None
        return int(value["block"]) if isinstance(value, dict) and isinstance(value.get("block"), int) else None

    def save(self, chain_id: int, address: str, block: int, tx_hash: str | None = None) -> None:
        return None
