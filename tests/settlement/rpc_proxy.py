"""A JSON-RPC proxy in front of anvil that behaves like a hosted provider: it refuses `eth_getLogs` over more than
`max_log_blocks` blocks (Alchemy's wording) and rate-limits now and then (HTTP 429, and JSON-RPC -32005 "limit
exceeded", as Infura says it). Everything else goes to anvil unchanged. It counts what it did, so a test can check
that the hub met every refusal and still got through.

Why deterministic ("every n-th request") rather than random: a failure must be reproducible.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from scb.http import BackgroundServer, listen_socket, serve_in_thread


@dataclass
class Counters:
    requests: int = 0
    http_429: int = 0
    rpc_limited: int = 0
    range_refused: int = 0
    #: JSON-RPC batches passed on, and refused (larger than `max_batch`)
    batches: int = 0
    batches_refused: int = 0
    #: (from, to) of every eth_getLogs the proxy passed on
    log_ranges: list[tuple[int, int]] = field(default_factory=list)


class RpcProxy:
    """`url` is the provider; `upstream` the anvil behind it."""

    def __init__(self, upstream: str, *, max_log_blocks: int = 1000, http_429_every: int = 7,
                 rpc_limit_every: int = 11, max_batch: int | None = None) -> None:
        """`max_batch`: refuse JSON-RPC batches of more requests (0: every batch), as a provider's plan does,
        with one error object for the whole batch; None passes batches of any size."""
        self.upstream = upstream
        self.max_log_blocks = max_log_blocks
        self.http_429_every = http_429_every
        self.rpc_limit_every = rpc_limit_every
        self.max_batch = max_batch
        self.counters = Counters()
        self.url = ""
        self._server: BackgroundServer | None = None
        self._session: ClientSession | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> RpcProxy:
        """Serve from a thread of its own (scb.http.serve_in_thread) on a port the system picks (no race)."""
        app = web.Application()
        app.router.add_post("/", self._handle)
        app.cleanup_ctx.append(self._upstream_session)
        self._server = serve_in_thread(app, listen_socket("127.0.0.1", 0, "rpc_proxy"), name="rpc-proxy")
        self.url = self._server.url
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    async def _upstream_session(self, _app: web.Application) -> AsyncIterator[None]:
        # made inside the server's running loop, as aiohttp requires; closed when the server stops
        async with ClientSession() as session:
            self._session = session
            yield

    # -- requests ---------------------------------------------------------------------------------------------
    async def _upstream(self, body: Any) -> Any:
        assert self._session is not None
        async with self._session.post(self.upstream, json=body) as answer:
            return await answer.json(content_type=None)

    async def _block(self, tag: Any) -> int:
        if tag in (None, "latest", "pending", "safe", "finalized"):
            answer = await self._upstream({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})
            return int(answer["result"], 16)
        if tag == "earliest":
            return 0
        return int(tag, 16)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        c = self.counters
        c.requests += 1
        if self.http_429_every and c.requests % self.http_429_every == 0:
            c.http_429 += 1
            return web.Response(status=429, text="Too Many Requests")
        request_id = body.get("id") if isinstance(body, dict) else None
        if self.rpc_limit_every and c.requests % self.rpc_limit_every == 0:
            c.rpc_limited += 1
            return web.json_response({"jsonrpc": "2.0", "id": request_id,
                                      "error": {"code": -32005, "message": "limit exceeded"}})
        if isinstance(body, list):
            if self.max_batch is not None and len(body) > self.max_batch:
                c.batches_refused += 1
                return web.json_response({"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32600, "message": f"batch of {len(body)} requests exceeds the limit of {self.max_batch}"}})
            c.batches += 1
        if isinstance(body, dict) and body.get("method") == "eth_getLogs":
            query = (body.get("params") or [{}])[0]
            if "blockHash" not in query:
                lo, hi = await self._block(query.get("fromBlock")), await self._block(query.get("toBlock"))
                if hi - lo + 1 > self.max_log_blocks:
                    c.range_refused += 1
                    return web.json_response({"jsonrpc": "2.0", "id": request_id, "error": {
                        "code": -32602, "message": f"query exceeds max block range {self.max_log_blocks}"}})
                c.log_ranges.append((lo, hi))
        return web.json_response(await self._upstream(body))
