"""The tangle node's HTTP side: IRI's legacy API on aiohttp.

One POST endpoint takes `{"command": ..., ...}` with an `X-IOTA-API-Version` header and answers JSON with a
`duration` field, like IRI 1.8. Error shapes are IRI's too, because clients parse them:
* a bad request (unknown command, bad JSON, bad trytes, invalid transaction, too large) -> 400 `{"error": ...}`;
* a command switched off on this node (attachToTangle with `remote_pow = false`) -> 401 `{"error": ...}`,
  IRI's answer for its `remoteLimitApi` commands;
* a fault of the node itself (disk full, a bug) -> 500 `{"exception": ...}` with one line, never a traceback.

Threads: the event loop only parses and dispatches. Every database call runs in one single-thread executor
(so the SQLite connection has one owner and writes are serialized), transaction hashing for validation in the
default executor, and proof of work in its own executor (one search at a time, each using every core).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from iota import Address

from mam_client import pow as local_pow
from mam_client.node import transaction as tx
from mam_client.node.settings import NodeSettings
from mam_client.node.store import Store
from scb import __version__, http, safejson
from scb.errors import BadRequest, ConfigError, DataError

if TYPE_CHECKING:
    from mam_client.node.prune import Pruner
    from scb.loop import Heartbeat

log = logging.getLogger("mam_client.node")

API_VERSION_HEADER = "X-IOTA-API-Version"
#: attachToTangle / storeTransactions refuse an attachment timestamp further ahead than this (IRI: 2 hours).
MAX_FUTURE_MS = 2 * 60 * 60 * 1000
TAG_TRYTES = 27

_T = TypeVar("_T")
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ApiError(BadRequest):
    """An answer other than 200: IRI's JSON error shape with this message and status."""


# ---- parameter checks (each raises ApiError naming the parameter; check_* are shared with fleet.permanode) ----


def _list(req: dict[str, Any], key: str, max_len: int, *, required: bool = True) -> list[Any] | None:
    if key not in req or req[key] is None:
        if required:
            raise ApiError(f"Invalid parameters: {key} is missing")
        return None
    value = req[key]
    if not isinstance(value, list):
        raise ApiError(f"Invalid parameters: {key} must be a list")
    if len(value) > max_len:
        raise ApiError(f"Invalid parameters: {key} has {len(value)} entries, the limit is {max_len}")
    return value


def check_hashes(req: dict[str, Any], key: str, max_len: int, *, required: bool = True) -> list[str] | None:
    values = _list(req, key, max_len, required=required)
    if values is None:
        return None
    for i, h in enumerate(values):
        if not tx.is_trytes(h, tx.HASH_TRYTES):
            raise ApiError(f"Invalid {key} input: entry {i} is not a hash of {tx.HASH_TRYTES} trytes")
    return values


def check_addresses(req: dict[str, Any], max_len: int, *, required: bool = True) -> list[str] | None:
    """81-tryte addresses, or 90 with a checksum (checked, then removed) as iota.js and PyOTA may send."""
    values = _list(req, "addresses", max_len, required=required)
    if values is None:
        return None
    out = []
    for i, a in enumerate(values):
        if tx.is_trytes(a, 90):
            if not Address(a).is_checksum_valid():
                raise ApiError(f"Invalid addresses input: entry {i} has a wrong checksum")
            a = a[:81]
        if not tx.is_trytes(a, tx.HASH_TRYTES):
            raise ApiError(f"Invalid addresses input: entry {i} is not an address of 81 (or 90) trytes")
        out.append(a)
    return out


def _tags(req: dict[str, Any], max_len: int) -> list[str] | None:
    values = _list(req, "tags", max_len, required=False)
    if values is None:
        return None
    out = []
    for i, t in enumerate(values):
        if not tx.is_trytes(t) or len(t) > TAG_TRYTES:
            raise ApiError(f"Invalid tags input: entry {i} is not a tag of 1..{TAG_TRYTES} trytes")
        out.append(t.ljust(TAG_TRYTES, "9"))
    return out


def _int(req: dict[str, Any], key: str, low: int, high: int, *, required: bool = True) -> int | None:
    if key not in req or req[key] is None:
        if required:
            raise ApiError(f"Invalid parameters: {key} is missing")
        return None
    value = req[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(f"Invalid {key} input: must be an integer {low}..{high}")
    return value


def _transaction_trytes(req: dict[str, Any], max_len: int) -> list[str]:
    values = _list(req, "trytes", max_len)
    assert values is not None
    if not values:
        raise ApiError("Invalid trytes input: the list is empty")
    for i, t in enumerate(values):
        if not tx.is_trytes(t, tx.TRANSACTION_TRYTES):
            raise ApiError(f"Invalid trytes input: entry {i} is not {tx.TRANSACTION_TRYTES} trytes of 9A-Z")
    return values


# ---- the node ----


class TangleNode:
    """State of one running node: settings, the store (behind its executor), the PoW machinery."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tangle-db")
        self._pow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tangle-pow")
        self._cancel = local_pow.PowCancel()
        self._attach_lock: asyncio.Lock | None = None
        self.started_ms = int(time.time() * 1000)
        self.commands: dict[str, Handler] = {
            "getNodeInfo": self.get_node_info,
            "getNeighbors": self.get_neighbors,
            "getTips": self.get_tips,
            "getTransactionsToApprove": self.get_transactions_to_approve,
            "attachToTangle": self.attach_to_tangle,
            "interruptAttachingToTangle": self.interrupt_attaching_to_tangle,
            "storeTransactions": self.store_transactions,
            "broadcastTransactions": self.broadcast_transactions,
            "findTransactions": self.find_transactions,
            "getTrytes": self.get_trytes,
            "getInclusionStates": self.get_inclusion_states,
            "checkConsistency": self.check_consistency,
            "getBalances": self.get_balances,
            "wereAddressesSpentFrom": self.were_addresses_spent_from,
        }

    # -- life cycle --

    async def on_startup(self, app: web.Application) -> None:
        self._attach_lock = asyncio.Lock()
        try:
            self.store = await self._in_db(Store, self.settings.db)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"the tangle database {self.settings.db} cannot be opened: {exc}") from None
        count = await self._in_db(lambda: self._require_store().count())
        log.info(
            "tangle node: %d transactions in %s, minimum weight magnitude %d, remote PoW %s",
            count, self.settings.db, self.settings.mwm, "on" if self.settings.remote_pow else "off",
        )

    async def on_cleanup(self, app: web.Application) -> None:
        self._cancel.cancel()
        if self.store is not None:
            await self._in_db(self.store.close)
            self.store = None
        self._pow.shutdown(wait=True)
        self._db.shutdown(wait=True)

    def _require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the store is not open")
        return self.store

    async def _in_db(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # -- HTTP --

    async def handle(self, request: web.Request) -> web.Response:
        return await answer_iri(request, self.commands, self.settings.max_body_bytes)

    # -- validation shared by store and broadcast --

    def _validate(self, trytes: list[str]) -> list[tx.Transaction]:
        """Transaction-level checks of IRI's TransactionValidator for a zero-value tangle (runs off the loop)."""
        out = []
        now = int(time.time() * 1000)
        for i, t in enumerate(trytes):
            parsed = tx.parse(t)
            if parsed.weight < self.settings.mwm:
                raise ApiError(
                    f"Invalid transaction hash: transaction {i} ({parsed.hash}) has weight {parsed.weight}, "
                    f"this node's minimum weight magnitude is {self.settings.mwm}"
                )
            if parsed.value != 0:
                raise ApiError(f"Invalid transaction value: transaction {i} moves value; this tangle is zero-value")
            if not 0 <= parsed.current_index <= parsed.last_index:
                raise ApiError(
                    f"Invalid transaction: transaction {i} has currentIndex {parsed.current_index} "
                    f"and lastIndex {parsed.last_index}"
                )
            ahead = (
                parsed.attachment_timestamp - now
                if parsed.attachment_timestamp
                else parsed.timestamp * 1000 - now
            )
            if ahead > MAX_FUTURE_MS:
                raise ApiError(f"Invalid transaction timestamp: transaction {i} is dated in the future")
            out.append(parsed)
        return out

    async def _validated(self, req: dict[str, Any]) -> list[tx.Transaction]:
        trytes = _transaction_trytes(req, self.settings.max_requests_list)
        return await asyncio.get_running_loop().run_in_executor(None, self._validate, trytes)

    # -- commands --

    async def get_node_info(self, req: dict[str, Any]) -> dict[str, Any]:
        store = self._require_store()
        # "tips" counts the tips getTransactionsToApprove draws from (kept as a table: cheap on a large tangle)
        count, tips = await self._in_db(lambda: (store.count(), store.tip_candidate_count()))
        return {
            "appName": "SCB tangle-node",
            "appVersion": __version__,
            "jreAvailableProcessors": os.cpu_count() or 1,
            "jreFreeMemory": 0,
            "jreMaxMemory": 0,
            "jreTotalMemory": 0,
            "jreVersion": "none (Python)",
            "latestMilestone": tx.NULL_HASH,
            "latestMilestoneIndex": 0,
            "latestSolidSubtangleMilestone": tx.NULL_HASH,
            "latestSolidSubtangleMilestoneIndex": 0,
            "milestoneStartIndex": 0,
            "lastSnapshottedMilestoneIndex": 0,
            "neighbors": 0,
            "packetsQueueSize": 0,
            "time": int(time.time() * 1000),
            "tips": tips,
            "transactionsToRequest": 0,
            "features": ["RemotePOW"] if self.settings.remote_pow else [],
            "coordinatorAddress": tx.NULL_HASH,
            # not in IRI; what a client needs to know about this tangle
            "transactions": count,
            "minWeightMagnitude": self.settings.mwm,
        }

    async def get_neighbors(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"neighbors": []}

    async def get_tips(self, req: dict[str, Any]) -> dict[str, Any]:
        store = self._require_store()
        return {"hashes": await self._in_db(store.tips, self.settings.max_tips)}

    async def get_transactions_to_approve(self, req: dict[str, Any]) -> dict[str, Any]:
        _int(req, "depth", 0, self.settings.max_depth)
        reference = req.get("reference")
        if reference is not None and not tx.is_trytes(reference, tx.HASH_TRYTES):
            raise ApiError("Invalid reference input: must be a transaction hash of 81 trytes")
        store = self._require_store()

        def pick() -> tuple[str, str]:
            tips = store.tip_candidates(2)
            if reference is not None:
                ref = store.get(reference)
                if ref is None or not store.included([reference])[0]:
                    raise ApiError(f"Invalid reference: {reference} is unknown or not part of a valid bundle")
                return reference, tips[0] if tips else reference
            if not tips:
                return tx.NULL_HASH, tx.NULL_HASH  # empty tangle: approve the genesis (the null hash)
            return tips[0], tips[-1]

        trunk, branch = await self._in_db(pick)
        return {"trunkTransaction": trunk, "branchTransaction": branch}

    async def attach_to_tangle(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.settings.remote_pow:
            raise ApiError("COMMAND attachToTangle is not available on this node", status=401)
        trunk, branch = req.get("trunkTransaction"), req.get("branchTransaction")
        if not tx.is_trytes(trunk, tx.HASH_TRYTES):
            raise ApiError("Invalid trunkTransaction input: must be a hash of 81 trytes")
        if not tx.is_trytes(branch, tx.HASH_TRYTES):
            raise ApiError("Invalid branchTransaction input: must be a hash of 81 trytes")
        mwm = _int(req, "minWeightMagnitude", 0, 243)
        assert mwm is not None
        if mwm < self.settings.mwm:
            raise ApiError(
                f"Invalid minWeightMagnitude input: {mwm} is below this node's minimum weight magnitude "
                f"{self.settings.mwm}"
            )
        if mwm > self.settings.max_attach_mwm:
            raise ApiError(
                f"Invalid minWeightMagnitude input: {mwm} is above this node's limit {self.settings.max_attach_mwm}"
            )
        trytes = _transaction_trytes(req, self.settings.max_requests_list)
        assert self._attach_lock is not None
        loop = asyncio.get_running_loop()
        async with self._attach_lock:
            self._cancel.reset()
            try:
                attached = await loop.run_in_executor(
                    self._pow,
                    lambda: local_pow.attach_trytes(
                        trytes, trunk, branch, mwm,
                        threads=self.settings.pow_threads or None, cancel=self._cancel,
                    ),
                )
            except local_pow.PowInterrupted:
                attached = []  # IRI answers an interrupted attach with an empty list
        return {"trytes": attached}

    async def interrupt_attaching_to_tangle(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.settings.remote_pow:
            raise ApiError("COMMAND interruptAttachingToTangle is not available on this node", status=401)
        self._cancel.cancel()
        return {}

    async def store_transactions(self, req: dict[str, Any]) -> dict[str, Any]:
        parsed = await self._validated(req)
        store = self._require_store()
        result = await self._in_db(store.store, parsed)
        log.debug("stored %d transactions (%d already known)", result.stored, result.duplicates)
        return {}

    async def broadcast_transactions(self, req: dict[str, Any]) -> dict[str, Any]:
        await self._validated(req)  # no neighbours to send to; IRI validates before broadcasting
        return {}

    async def find_transactions(self, req: dict[str, Any]) -> dict[str, Any]:
        n = self.settings.max_requests_list
        query = {
            "addresses": check_addresses(req, n, required=False),
            "bundles": check_hashes(req, "bundles", n, required=False),
            "tags": _tags(req, n),
            "approvees": check_hashes(req, "approvees", n, required=False),
        }
        if all(v is None for v in query.values()):
            raise ApiError("Invalid parameters: give at least one of addresses, bundles, tags, approvees")
        store = self._require_store()
        limit = self.settings.max_find_transactions
        try:
            hashes = await self._in_db(lambda: store.find(limit=limit, **query))
        except DataError as exc:
            raise ApiError(f"Could not complete request: {exc}") from None
        return {"hashes": hashes}

    async def get_trytes(self, req: dict[str, Any]) -> dict[str, Any]:
        hashes = check_hashes(req, "hashes", self.settings.max_get_trytes)
        assert hashes is not None
        store = self._require_store()
        found = await self._in_db(store.get_trytes, hashes)
        # IRI answers an unknown hash with an all-9 transaction, not an error
        return {"trytes": [t if t is not None else tx.NULL_TRANSACTION for t in found]}

    async def get_inclusion_states(self, req: dict[str, Any]) -> dict[str, Any]:
        n = self.settings.max_requests_list
        hashes = check_hashes(req, "transactions", n)
        check_hashes(req, "tips", n, required=False)  # checked, not used: there are no milestones to confirm against
        assert hashes is not None
        store = self._require_store()
        return {"states": await self._in_db(store.included, hashes)}

    async def check_consistency(self, req: dict[str, Any]) -> dict[str, Any]:
        tails = check_hashes(req, "tails", self.settings.max_requests_list)
        assert tails is not None
        store = self._require_store()
        try:
            state, info = await self._in_db(store.consistency, tails)
        except DataError as exc:
            raise ApiError(str(exc)) from None
        return {"state": state, "info": info} if info else {"state": state}

    async def get_balances(self, req: dict[str, Any]) -> dict[str, Any]:
        addresses = check_addresses(req, self.settings.max_requests_list)
        assert addresses is not None
        _int(req, "threshold", 1, 100, required=False)
        check_hashes(req, "tips", self.settings.max_requests_list, required=False)
        return {"balances": ["0"] * len(addresses), "references": [tx.NULL_HASH], "milestoneIndex": 0}

    async def were_addresses_spent_from(self, req: dict[str, Any]) -> dict[str, Any]:
        addresses = check_addresses(req, self.settings.max_requests_list)
        assert addresses is not None
        return {"states": [False] * len(addresses)}


def cors_headers() -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Headers": "Content-Type, X-IOTA-API-Version",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
    }


async def answer_iri(request: web.Request, commands: Mapping[str, Handler], max_body_bytes: int,
                     logger: logging.Logger = log) -> web.Response:
    """One request of the legacy IRI HTTP API: checks (POST, `X-IOTA-API-Version`, body limit, a JSON object
    naming a known `command`), the command's handler, and IRI's answer shapes (`duration`; `error` with 400 for a
    refused request, `exception` with 500 for the server's own fault). Shared with the fleet's permanode
    (fleet.permanode), so that both APIs refuse the same requests with the same words; `logger` names the server."""
    started = time.monotonic()
    command = "?"
    try:
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=cors_headers())
        if request.method != "POST":
            raise ApiError("Invalid request: use HTTP POST with a JSON command")
        if API_VERSION_HEADER not in request.headers:
            raise ApiError("Invalid API Version")
        try:
            body = await http.read_body(request, max_body_bytes)
        except BadRequest as exc:  # IRI answers both with 400
            raise ApiError(f"Request too long: {exc}" if exc.status == 413 else f"Invalid request: {exc}") from None
        try:
            req = safejson.loads(body)
        except (ValueError, RecursionError):
            raise ApiError("Invalid JSON syntax") from None
        if not isinstance(req, dict):
            raise ApiError("Invalid JSON syntax: the request must be a JSON object")
        command = req.get("command")
        if command is None:
            raise ApiError("COMMAND parameter has not been specified in the request.")
        if not isinstance(command, str) or command not in commands:
            command = str(command)[:64]
            raise ApiError(f"Command [{command}] is unknown")
        result = await commands[command](req)
        result["duration"] = int((time.monotonic() - started) * 1000)
        return web.json_response(result, headers=cors_headers())
    except ApiError as exc:
        logger.info("%s refused (%d): %s", command, exc.status, exc.message)
        payload = {"error": exc.message, "duration": int((time.monotonic() - started) * 1000)}
        return web.json_response(payload, status=exc.status, headers=cors_headers())
    except DataError as exc:
        logger.info("%s refused (400): %s", command, exc)
        payload = {"error": str(exc), "duration": int((time.monotonic() - started) * 1000)}
        return web.json_response(payload, status=400, headers=cors_headers())
    except Exception as exc:  # noqa: BLE001 - the server's own fault: one line to the client, details to the log
        if os.environ.get("SCB_DEBUG"):
            logger.exception("%s failed", command)
        else:
            logger.error("%s failed: %s: %s (set SCB_DEBUG=1 for a traceback)", command, type(exc).__name__, exc)
        payload = {"exception": f"internal error of the node ({type(exc).__name__}); see its log"}
        return web.json_response(payload, status=500, headers=cors_headers())


NODE_KEY = web.AppKey("tangle_node", TangleNode)


def create_app(settings: NodeSettings) -> web.Application:
    """The node as an aiohttp application (its store opens on start-up and closes on clean-up)."""
    node = TangleNode(settings)
    # the body is read by the handler with its own limit, so that an oversized request gets IRI's JSON error
    # the edge answers what never reaches `handle` (malformed HTTP, no route) in the JSON error shape; no Host or
    # Origin check: like IRI the node is an open API (CORS *), its data public and its writes checked by PoW
    app = web.Application(client_max_size=settings.max_body_bytes + 1,
                          middlewares=[http.edge_middleware(http.EdgePolicy(name="the tangle node"))])
    app[NODE_KEY] = node
    app.on_startup.append(node.on_startup)
    app.on_cleanup.append(node.on_cleanup)
    app.router.add_route("*", "/{tail:.*}", node.handle)
    return app


def prune_while_serving(app: web.Application, heartbeat: "Heartbeat",
                        make_pruner: Callable[[Store], "Pruner"], interval_s: float) -> None:
    """Run pruning passes (mam_client.node.prune) under the failure policy, in the store's database thread,
    `interval_s` apart, at once again while a backlog remains."""
    node = app[NODE_KEY]
    pruners: list["Pruner"] = []

    def one_pass() -> float | None:
        if not pruners:  # made on the first pass: the store opens at start-up
            pruners.append(make_pruner(node._require_store()))
        return 0.0 if pruners[0].run_pass().more else None

    async def step() -> float | None:
        return await node._in_db(one_pass)

    http.guard_while_serving(app, heartbeat, "prune", step, interval_s)


def run(settings: NodeSettings, data_dir: Path | None = None,
        make_pruner: Callable[[Store], "Pruner"] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (the `scb tangle-node` command); with `data_dir`, beat the process's
    heartbeat (scb.loop) from the event loop, probing the store in its database thread; with `make_pruner`,
    prune archived transactions every `prune_interval_s`."""
    from scb.loop import Heartbeat

    sock = http.listen_socket(settings.host, settings.port, "tangle_node")
    port = sock.getsockname()[1]
    app = create_app(settings)
    heartbeat = Heartbeat(data_dir, "tangle-node")
    if data_dir is not None:
        node = app[NODE_KEY]

        async def probe() -> None:
            await node._in_db(lambda: node._require_store().db.execute("SELECT 1").fetchone())

        http.beat_while_serving(app, heartbeat, probe)
    if make_pruner is not None:
        prune_while_serving(app, heartbeat, make_pruner, settings.prune_interval_s)

    async def announce(_app: web.Application) -> None:  # after the store opened: the node is really up
        log.info("tangle node listening on http://%s:%d", settings.host, port)

    app.on_startup.append(announce)
    http.run_app(app, sock=sock)


@dataclass
class RunningNode:
    """A node served from a background thread (tests, embedding): `url`, `settings`, `stop()`."""

    url: str
    settings: NodeSettings
    _server: http.BackgroundServer

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "RunningNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(settings: NodeSettings) -> RunningNode:
    """Start the node on its own event loop in a daemon thread; port 0 picks a free port (see `.url`)."""
    sock = http.listen_socket(settings.host, settings.port, "tangle_node")
    actual = replace(settings, port=sock.getsockname()[1])
    server = http.serve_in_thread(create_app(actual), sock, name="tangle-node")
    return RunningNode(url=server.url, settings=actual, _server=server)
