"""A JSON-RPC proxy in front of anvil that behaves like a hosted provider: it refuses `eth_getLogs` over more than
`max_log_blocks` blocks (Alchemy's wording) and rate-limits now and then (HTTP 429, and JSON-RPC -32005 "limit
exceeded", as Infura says it). Everything else goes to anvil unchanged. It counts what it did, so a test can check
that the hub met every refusal and still got through.

Why deterministic ("every n-th request") rather than random: a failure must be reproducible.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.conftest import free_port


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
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rpc-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> RpcProxy:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the RPC proxy did not start")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)

        async def setup() -> None:
            assert self._runner is not None
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._session = ClientSession()  # made inside the running loop, as aiohttp requires

        self._loop.run_until_complete(setup())
        self._ready.set()
        self._loop.run_forever()

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
