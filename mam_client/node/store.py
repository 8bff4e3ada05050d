"""The tangle node's own SQLite file: transactions, their indexes, solidity, bundle state and tip candidates.

Why its own file (not the hub database): the node is a separate process that stands in for an external legacy
node; it must survive restarts on its own and be replaceable by a real node without touching hub data.

Concurrency: one `Store` is used from one thread (the server runs every call in a single-worker executor), so
there are no locks here. Each `store()` is one SQLite transaction in WAL mode with `synchronous=FULL`: once the
node has answered storeTransactions, the transactions survive a crash or power cut.

Bundle consistency is decided when a bundle becomes *complete*, not per transaction (IRI stores single
transactions and validates bundles later):
* a tail (currentIndex 0) is *pending* while the walk along trunk from it reaches a transaction that is not
  stored yet; the hash it waits for is kept in `missing`, so the arrival of exactly that transaction resumes
  the walk;
* when the walk has collected lastIndex + 1 transactions (or meets one that cannot belong to the bundle),
  `transaction.check_bundle` decides: *valid* or *invalid* (with the reason);
* a request whose own tail completes an invalid bundle is refused as a whole (`BundleRejected`) and nothing
  of it is stored; a tail stored earlier that turns out invalid when the rest arrives is only marked invalid,
  so that junk cannot make valid transactions unstorable.
Only solid tails of valid bundles are offered by getTransactionsToApprove and reported as included.

Tips (getTips: every transaction nothing approves) are a maintained table, updated as transactions arrive, so
that getTips reads only the tips and never scans the tangle.

Pruning (`prune`, driven by mam_client.node.prune) is a local snapshot: the transactions of bundles the hub has
archived are deleted, after which they are unknown to every query, as on IRI after a local snapshot. A pruned
transaction that a stored one still references becomes a *solid entry point*: it counts as solid, so that
transactions approving it stay (and become) solid. Tips and tip candidates are never pruned: the tangle must
keep something to build on.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mam_client.node import transaction as tx
from scb.errors import DataError
from scb.wal import WAL_AUTOCHECKPOINT_PAGES

SCHEMA_VERSION = "2"
#: Schemas this version opens and upgrades in place (1: before the tips table and pruning).
_UPGRADABLE = ("1",)

PENDING, VALID, INVALID = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    trytes TEXT NOT NULL,
    address TEXT NOT NULL,
    bundle TEXT NOT NULL,
    tag TEXT NOT NULL,
    obsolete_tag TEXT NOT NULL,
    trunk TEXT NOT NULL,
    branch TEXT NOT NULL,
    current_index INTEGER NOT NULL,
    last_index INTEGER NOT NULL,
    arrival_ms INTEGER NOT NULL,
    solid INTEGER NOT NULL DEFAULT 0,
    bundle_state INTEGER NOT NULL DEFAULT 0,
    bundle_error TEXT,
    missing TEXT,
    in_valid_bundle INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tx_address ON transactions (address);
CREATE INDEX IF NOT EXISTS tx_bundle ON transactions (bundle);
CREATE INDEX IF NOT EXISTS tx_tag ON transactions (tag);
CREATE INDEX IF NOT EXISTS tx_obsolete_tag ON transactions (obsolete_tag);
CREATE INDEX IF NOT EXISTS tx_trunk ON transactions (trunk);
CREATE INDEX IF NOT EXISTS tx_branch ON transactions (branch);
CREATE INDEX IF NOT EXISTS tx_missing ON transactions (missing) WHERE missing IS NOT NULL;
CREATE TABLE IF NOT EXISTS tip_candidates (hash TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS tips (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS solid_entry_points (hash TEXT PRIMARY KEY);
"""
#: Fills the tips table of a schema 1 file once (the one full scan, at upgrade).
_FILL_TIPS = (
    "INSERT OR IGNORE INTO tips (seq, hash) SELECT t.seq, t.hash FROM transactions t"
    " WHERE NOT EXISTS (SELECT 1 FROM transactions a WHERE a.trunk=t.hash)"
    " AND NOT EXISTS (SELECT 1 FROM transactions b WHERE b.branch=t.hash)"
)


class BundleRejected(DataError):
    """A request brought the tail of a complete bundle that is not consistent; nothing was stored."""


class TooManyResults(DataError):
    """A query matched more transactions than the node's limit (IRI: 'Could not complete request')."""


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int
    bundles_validated: int


class Store:
    """The node's persistent tangle. Open with `Store(path)`; `close()` when done."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] in _UPGRADABLE:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(_FILL_TIPS)
            self.db.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA_VERSION,))
            self.db.execute("COMMIT")
        elif row[0] != SCHEMA_VERSION:
            raise DataError(f"{self.path} has tangle schema {row[0]}, this node reads schema {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ---- writing ----

    def store(self, transactions: Sequence[tx.Transaction]) -> StoreResult:
        """Store already validated (tx-level) transactions atomically; see the module docstring for bundles."""
        db = self.db
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            new: list[tx.Transaction] = []
            seen: set[str] = set()
            duplicates = 0
            for t in transactions:
                if t.hash in seen or db.execute("SELECT 1 FROM transactions WHERE hash=?", (t.hash,)).fetchone():
                    duplicates += 1
                    continue
                seen.add(t.hash)
                new.append(t)
                db.execute(
                    "INSERT INTO transactions (hash, trytes, address, bundle, tag, obsolete_tag, trunk, branch,"
                    " current_index, last_index, arrival_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        t.hash, t.trytes, t.address, t.bundle, t.tag, t.obsolete_tag, t.trunk, t.branch,
                        t.current_index, t.last_index, now,
                    ),
                )
            self._update_tips(new)
            newly_solid = self._update_solidity(new)
            touched_tails, validated = self._update_bundles(new, {t.hash for t in new})
            self._update_tip_candidates(touched_tails | newly_solid)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return StoreResult(stored=len(new), duplicates=duplicates, bundles_validated=validated)

    def _update_tips(self, new: Sequence[tx.Transaction]) -> None:
        """New transactions are tips unless a stored one approves them; what they approve is no tip any more."""
        db = self.db
        for t in new:
            db.execute("DELETE FROM tips WHERE hash IN (?, ?)", (t.trunk, t.branch))
        for t in new:
            if not self._referenced(t.hash):
                db.execute("INSERT OR IGNORE INTO tips (seq, hash) SELECT seq, hash FROM transactions WHERE hash=?",
                           (t.hash,))

    def _parent_ok(self, h: str) -> bool:
        if h == tx.NULL_HASH:
            return True
        row = self.db.execute("SELECT solid FROM transactions WHERE hash=?", (h,)).fetchone()
        if row is not None:
            return bool(row[0])
        return self.db.execute("SELECT 1 FROM solid_entry_points WHERE hash=?", (h,)).fetchone() is not None

    # ---- pruning (a local snapshot) ----

    def prune(self, hashes: Sequence[str]) -> int:
        """Delete these transactions (those of archived bundles) in one SQLite transaction; return how many.

        Skipped, and so kept: unknown hashes, tips and tip candidates (something to build on), and transactions
        not yet solid members of a valid bundle (a pending walk may still need them). A deleted transaction that
        a stored one still references becomes a solid entry point; entry points nothing references any more
        are dropped.
        """
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted: list[tuple[str, str, str]] = []
            for h in dict.fromkeys(hashes):
                row = db.execute(
                    "SELECT trunk, branch FROM transactions WHERE hash=? AND solid=1 AND in_valid_bundle=1"
                    " AND hash NOT IN (SELECT hash FROM tips) AND hash NOT IN (SELECT hash FROM tip_candidates)",
                    (h,)).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM transactions WHERE hash=?", (h,))
                deleted.append((h, row[0], row[1]))
            for h, trunk, branch in deleted:
                if self._referenced(h):
                    db.execute("INSERT OR IGNORE INTO solid_entry_points (hash) VALUES (?)", (h,))
                for parent in (trunk, branch):
                    if not self._referenced(parent):
                        db.execute("DELETE FROM solid_entry_points WHERE hash=?", (parent,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(deleted)

    def _referenced(self, h: str) -> bool:
        """Whether a stored transaction approves `h` (as its trunk or branch)."""
        return self.db.execute(
            "SELECT 1 FROM transactions WHERE trunk=? UNION ALL SELECT 1 FROM transactions WHERE branch=? LIMIT 1",
            (h, h)).fetchone() is not None

    def solid_entry_point_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM solid_entry_points").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))

    def _update_solidity(self, new: Iterable[tx.Transaction]) -> set[str]:
        """Mark solid every transaction whose past cone is now complete; return the hashes that became solid."""
        db = self.db
        became: set[str] = set()
        queue: list[str] = []
        for t in new:
            if self._parent_ok(t.trunk) and self._parent_ok(t.branch):
                db.execute("UPDATE transactions SET solid=1 WHERE hash=?", (t.hash,))
                became.add(t.hash)
                queue.append(t.hash)
        while queue:
            h = queue.pop()
            for (child, trunk, branch) in db.execute(
                "SELECT hash, trunk, branch FROM transactions WHERE (trunk=? OR branch=?) AND solid=0", (h, h)
            ).fetchall():
                if self._parent_ok(trunk) and self._parent_ok(branch):
                    db.execute("UPDATE transactions SET solid=1 WHERE hash=?", (child,))
                    became.add(child)
                    queue.append(child)
        return became

    def _load(self, h: str) -> tx.Transaction | None:
        row = self.db.execute("SELECT hash, trytes FROM transactions WHERE hash=?", (h,)).fetchone()
        return tx.parse(row[1], tx_hash=row[0]) if row else None

    def _walk(self, tail: tx.Transaction) -> tuple[list[tx.Transaction], str | None]:
        """Follow trunk from a tail. Returns (chain, missing hash) - missing is None once the walk is decided."""
        chain = [tail]
        while len(chain) <= tail.last_index:
            nxt = self._load(chain[-1].trunk)
            if nxt is None:
                return chain, chain[-1].trunk
            chain.append(nxt)
            if nxt.bundle != tail.bundle or nxt.current_index != len(chain) - 1:
                break  # cannot be completed: check_bundle reports why
        return chain, None

    def _update_bundles(self, new: Sequence[tx.Transaction], request_hashes: set[str]) -> tuple[set[str], int]:
        db = self.db
        tails: dict[str, None] = {}
        for t in new:
            if t.current_index == 0:
                tails[t.hash] = None
            for (h,) in db.execute("SELECT hash FROM transactions WHERE missing=?", (t.hash,)).fetchall():
                tails[h] = None
        touched: set[str] = set()
        validated = 0
        for h in tails:
            tail = self._load(h)
            assert tail is not None
            chain, missing = self._walk(tail)
            if missing is not None:
                db.execute("UPDATE transactions SET missing=? WHERE hash=?", (missing, h))
                continue
            error = tx.check_bundle(chain)
            if error is not None:
                if h in request_hashes:
                    raise BundleRejected(f"invalid bundle {tail.bundle} (tail {h}): {error}")
                db.execute(
                    "UPDATE transactions SET bundle_state=?, bundle_error=?, missing=NULL WHERE hash=?",
                    (INVALID, error, h),
                )
                continue
            validated += 1
            touched.add(h)
            db.execute("UPDATE transactions SET bundle_state=?, missing=NULL WHERE hash=?", (VALID, h))
            for member in chain:
                db.execute("UPDATE transactions SET in_valid_bundle=1 WHERE hash=?", (member.hash,))
                db.execute("DELETE FROM tip_candidates WHERE hash IN (?, ?)", (member.trunk, member.branch))
        return touched, validated

    def _update_tip_candidates(self, hashes: Iterable[str]) -> None:
        """A solid tail of a valid bundle that no valid bundle approves yet is a tip to build on."""
        db = self.db
        for h in hashes:
            row = db.execute(
                "SELECT current_index, solid, bundle_state FROM transactions WHERE hash=?", (h,)
            ).fetchone()
            if not row or row[0] != 0 or not row[1] or row[2] != VALID:
                continue
            approved = db.execute(
                "SELECT 1 FROM transactions WHERE (trunk=? OR branch=?) AND in_valid_bundle=1 LIMIT 1", (h, h)
            ).fetchone()
            if not approved:
                db.execute("INSERT OR IGNORE INTO tip_candidates (hash) VALUES (?)", (h,))

    # ---- reading ----

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM transactions").fetchone()[0])

    def get_trytes(self, hashes: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for h in hashes:
            row = self.db.execute("SELECT trytes FROM transactions WHERE hash=?", (h,)).fetchone()
            out.append(row[0] if row else None)
        return out

    def get(self, h: str) -> tx.Transaction | None:
        return self._load(h)

    def _select(self, sql: str, params: Sequence[str], limit: int) -> dict[str, int]:
        rows = self.db.execute(sql + f" LIMIT {int(limit) + 1}", tuple(params)).fetchall()
        if len(rows) > limit:
            raise TooManyResults(f"more than {limit} transactions match; narrow the query")
        return {h: seq for (h, seq) in rows}

    def find(
        self,
        *,
        addresses: Sequence[str] | None = None,
        bundles: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        approvees: Sequence[str] | None = None,
        limit: int = 100_000,
    ) -> list[str]:
        """IRI findTransactions: union within each given field, intersection across fields, arrival order.

        A tag matches the `tag` field; when no transaction has that tag, it matches `obsoleteTag` (IRI does the
        same, because old clients only set the obsolete tag).
        """
        sets: list[dict[str, int]] = []

        def marks(n: int) -> str:
            return ",".join("?" * n)

        if addresses is not None:
            sets.append(
                self._select(f"SELECT hash, seq FROM transactions WHERE address IN ({marks(len(addresses))})",
                             addresses, limit) if addresses else {}
            )
        if bundles is not None:
            sets.append(
                self._select(f"SELECT hash, seq FROM transactions WHERE bundle IN ({marks(len(bundles))})",
                             bundles, limit) if bundles else {}
            )
        if tags is not None:
            found: dict[str, int] = {}
            for tag in tags:
                hits = self._select("SELECT hash, seq FROM transactions WHERE tag=?", [tag], limit)
                if not hits:
                    hits = self._select("SELECT hash, seq FROM transactions WHERE obsolete_tag=?", [tag], limit)
                found.update(hits)
                if len(found) > limit:
                    raise TooManyResults(f"more than {limit} transactions match; narrow the query")
            sets.append(found)
        if approvees is not None:
            found = {}
            if approvees:
                m = marks(len(approvees))
                found = self._select(
                    f"SELECT hash, seq FROM transactions WHERE trunk IN ({m}) OR branch IN ({m})",
                    list(approvees) + list(approvees), limit,
                )
            sets.append(found)
        if not sets:
            return []
        result = sets[0]
        for other in sets[1:]:
            result = {h: s for h, s in result.items() if h in other}
        return [h for h, _ in sorted(result.items(), key=lambda item: item[1])]

    #: getTips' query: the newest tips, read from the maintained table (never a scan of `transactions`).
    TIPS_SQL = "SELECT hash FROM tips ORDER BY seq DESC LIMIT ?"

    def tips(self, limit: int) -> list[str]:
        """Every stored transaction that no stored transaction approves (IRI getTips), newest first."""
        return [h for (h,) in self.db.execute(self.TIPS_SQL, (limit,)).fetchall()]

    def tip_candidates(self, n: int) -> list[str]:
        """Up to `n` distinct random tips to approve: solid tails of valid bundles not yet approved."""
        rows = self.db.execute("SELECT hash FROM tip_candidates ORDER BY random() LIMIT ?", (n,)).fetchall()
        return [h for (h,) in rows]

    def tip_candidate_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM tip_candidates").fetchone()[0])

    def included(self, hashes: Sequence[str]) -> list[bool]:
        """getInclusionStates on a coordinator-less tangle: a transaction counts as confirmed once it is solid and
        part of a valid bundle (this node confirms at once; there are no milestones)."""
        out = []
        for h in hashes:
            row = self.db.execute("SELECT solid, in_valid_bundle FROM transactions WHERE hash=?", (h,)).fetchone()
            out.append(bool(row and row[0] and row[1]))
        return out

    def consistency(self, tails: Sequence[str]) -> tuple[bool, str]:
        """checkConsistency: every tail must be stored and be a tail (else DataError); then solid and valid."""
        rows = []
        for h in tails:
            row = self.db.execute(
                "SELECT current_index, solid, bundle_state, bundle_error FROM transactions WHERE hash=?", (h,)
            ).fetchone()
            if row is None or row[0] != 0:
                raise DataError(f"Invalid transaction, missing or not a tail: {h}")
            rows.append((h, row))
        for h, (_, solid, state, error) in rows:
            if state == INVALID:
                return False, f"tails are not consistent (bundle is invalid: {error}): {h}"
            if state == PENDING or not solid:
                return False, f"tails are not solid (missing a referenced tx): {h}"
        return True, ""
