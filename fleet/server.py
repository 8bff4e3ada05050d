"""The fleet server's HTTP side (aiohttp behind scb.http's edge: Host and Origin checks, JSON errors).

    POST /api/v1/upload                      a hub's signed batch (hub.fleet.protocol); 401 unsigned, 403 not allowed
    POST /iota                               the read-only legacy IRI API (fleet.permanode)
    GET  /api/v1/hubs                        every hub: last heartbeat, backlog, last settlement, alerts, stale
    GET  /api/v1/hubs/{account}              one hub
    GET  /api/v1/hubs/{account}/readings     ?from=&to= (ms or ISO 8601), meter=, after=, limit=   (paginated)
    GET  /api/v1/hubs/{account}/readings.csv the same as CSV (every page, streamed)
    GET  /api/v1/hubs/{account}/messages     ?after=&limit=
    GET  /api/v1/hubs/{account}/settlements  ?after=&limit=   (after: a period id)
    GET  /api/v1/hubs/{account}/holders      each holder's bills and standing
    GET  /api/v1/messages/{address}          the message(s) at a MAM address, with the hub's system
    GET  /api/v1/proofs/{digest}             a reading and its Merkle proof
    GET  /                                   the fleet page

Threads: the event loop parses and answers; every database call (and the chain check of an uploader's account)
runs in a thread pool, one thread for SQLite (one writer), several for PostgreSQL. An upload's checks (JSON, signature,
every item: the CPU part of ingest) run in that pool too (see `Fleet.check`).
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from fleet import queries
from fleet.auth import Authorizer
from fleet.ingest import Prepared, check_upload, ingest
from fleet.page import render_page
from fleet.permanode import Permanode
from hub.fleet.protocol import BatchError, OpenedBatch, SignatureError
from hub.fleet.settings import FleetSettings
from mam_client.node import transaction as tx
from scb import http
from scb.db import transaction
from scb.errors import BadRequest, ConfigError, DataError, TransportError

log = logging.getLogger("fleet")
_T = TypeVar("_T")
API = "/api/v1"
DEFAULT_PAGE = 1000


@dataclass
class Fleet:
    settings: FleetSettings
    factory: sessionmaker[Session]
    authorizer: Authorizer
    executor: ThreadPoolExecutor

    async def check(self, body: bytes) -> tuple[OpenedBatch, Prepared]:
        """An upload's checks (JSON, signature, every item), off the event loop. Why threads and not worker
        processes, though the checks are CPU work under the GIL: measured on 2 cores, a process pool was slower
        (5481 against 5957 readings/s, p99 2.1 s against 1.0 s: pickling the rows costs what the second core
        gains); more cores are better used by more `scb fleet serve` processes (docs/fleet.md "Scale")."""
        return await self.db(check_upload, body)

    async def db(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def query(self, fn: Callable[[Session], _T]) -> _T:
        """`fn(session)` in a session of its own, in the database threads (every read of the API and the page)."""
        def run() -> _T:
            with self.factory() as session:
                return fn(session)

        return await self.db(run)


FLEET_KEY = web.AppKey("fleet", Fleet)


def _fleet(request: web.Request) -> Fleet:
    return request.app[FLEET_KEY]


# ---- uploads -------------------------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    body = await http.read_body(request, fleet.settings.max_body_bytes)
    try:
        opened, prepared = await fleet.check(body)
    except SignatureError as exc:
        raise BadRequest(str(exc), status=401) from None
    except BatchError as exc:
        raise BadRequest(str(exc)) from None
    try:
        allowed = await fleet.db(fleet.authorizer.allowed, opened.signer)
    except TransportError as exc:
        log.warning("cannot check %s on the chain: %s", opened.signer, exc)
        return http.error_response(503, f"the fleet cannot check the uploader's role on the chain now: {exc}",
                                   {"Retry-After": "30"})
    if not allowed:
        raise BadRequest(f"account {opened.signer} may not upload to this fleet (scb fleet allow ACCOUNT, or the "
                         "hub role of a system on the fleet's contract)", status=403)

    def store() -> dict[str, Any]:
        with transaction(fleet.factory) as session:
            return ingest(session, opened, prepared).to_json()

    try:
        receipt = await fleet.db(store)
    except DataError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response(receipt)


# ---- the JSON API --------------------------------------------------------------------------------------------


def _int_param(request: web.Request, key: str, default: int, low: int = 0, high: int = 2**62) -> int:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{key} must be an integer from {low} to {high}")
    return int(raw)


def _time_param(request: web.Request, key: str) -> int | None:
    """`from` / `to`: milliseconds since the epoch, or an ISO 8601 time with its zone (2030-01-01T00:00:00Z)."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    if raw.isascii() and raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRequest(f"{key} must be milliseconds since 1970 or an ISO 8601 time with a zone, not {raw[:40]!r}")
    return int(moment.timestamp() * 1000)


async def list_hubs(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    found = await fleet.query(lambda s: queries.hubs(s, fleet.settings.stale_after_s))
    return web.json_response({"hubs": found})


async def one_hub(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    account = request.match_info["account"]
    found = await fleet.query(lambda s: queries.hub_summary(
        s, queries.hub_by_account(s, account), fleet.settings.stale_after_s))
    return web.json_response(found)


def _reading_query(request: web.Request) -> dict[str, Any]:
    return {"start_ms": _time_param(request, "from"), "end_ms": _time_param(request, "to"),
            "meter": request.query.get("meter") or None}


async def hub_readings(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    account = request.match_info["account"]
    params = _reading_query(request)
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, queries.MAX_PAGE)

    def read(session: Session) -> dict[str, Any]:
        rows, nxt = queries.readings(session, queries.hub_by_account(session, account), after=after, limit=limit,
                                     **params)
        return {"readings": [queries.reading_json(r) for r in rows], "next": nxt}

    return web.json_response(await fleet.query(read))


CSV_COLUMNS = ("ts", "ts_ms", "meter", "party", "circuit", "seq", "register_wh", "power_w", "delta_wh", "flags",
               "digest", "address")


async def hub_readings_csv(request: web.Request) -> web.StreamResponse:
    fleet = _fleet(request)
    account = request.match_info["account"]
    params = _reading_query(request)
    # looked up once, and before the headers go out (a 404 cannot follow them)
    hub = await fleet.query(lambda s: queries.hub_by_account(s, account))
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="readings.csv"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    after: int | None = 0
    while after is not None:
        def page(session: Session, start: int = after) -> tuple[list[Any], int | None]:
            rows, nxt = queries.readings(session, hub, after=start, limit=queries.MAX_PAGE, **params)
            return [queries.reading_json(r) for r in rows], nxt

        rows, after = await fleet.query(page)
        for r in rows:
            writer.writerow([r[c] for c in CSV_COLUMNS])
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    await response.write_eof()
    return response


async def hub_messages(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    account = request.match_info["account"]
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, queries.MAX_PAGE)

    def read(session: Session) -> dict[str, Any]:
        rows, nxt = queries.messages(session, queries.hub_by_account(session, account), after, limit)
        return {"messages": rows, "next": nxt}

    return web.json_response(await fleet.query(read))


async def hub_settlements(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    account = request.match_info["account"]
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, queries.MAX_PAGE)
    rows = await fleet.query(lambda s: queries.settlements(s, queries.hub_by_account(s, account), after, limit))
    return web.json_response({"settlements": rows})


async def hub_holders(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    account = request.match_info["account"]
    rows = await fleet.query(lambda s: queries.holders(s, queries.hub_by_account(s, account)))
    return web.json_response({"holders": rows})


async def message_at(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    address = request.match_info["address"]
    if not tx.is_trytes(address, 81):
        raise BadRequest("an address is 81 trytes (A-Z, 9)")
    found = await fleet.query(lambda s: queries.message_at(s, address))
    if found is None:
        raise BadRequest(f"no message at {address} on this fleet", status=404)
    return web.json_response(found)


async def proof_of(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    digest = request.match_info["digest"].lower().removeprefix("0x")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadRequest("a reading digest is 32 bytes of hex")
    found = await fleet.query(lambda s: queries.proof_of(s, digest))
    if found is None:
        raise BadRequest(f"no reading with digest {digest} on this fleet", status=404)
    return web.json_response(found)


async def page(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    found = await fleet.query(lambda s: queries.hubs(s, fleet.settings.stale_after_s))
    return web.Response(text=render_page(found, fleet.settings.stale_after_s), content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                                 "Cache-Control": "no-store"})


# ---- the application -----------------------------------------------------------------------------------------


def create_app(settings: FleetSettings, engine: Engine, factory: sessionmaker[Session],
               authorizer: Authorizer) -> web.Application:
    workers = 1 if engine.dialect.name == "sqlite" else 8
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet-db")
    fleet = Fleet(settings, factory, authorizer, executor)
    policy = http.EdgePolicy.local("the fleet server", settings.host, settings.allowed_hosts, "fleet.allowed_hosts")
    app = web.Application(client_max_size=settings.max_body_bytes + 1, middlewares=[http.edge_middleware(policy)])
    app[FLEET_KEY] = fleet
    permanode = Permanode(factory, executor)
    app.router.add_post(f"{API}/upload", upload)
    app.router.add_route("*", "/iota", permanode.handle)
    app.router.add_get(f"{API}/hubs", list_hubs)
    app.router.add_get(API + "/hubs/{account}", one_hub)
    app.router.add_get(API + "/hubs/{account}/readings", hub_readings)
    app.router.add_get(API + "/hubs/{account}/readings.csv", hub_readings_csv)
    app.router.add_get(API + "/hubs/{account}/messages", hub_messages)
    app.router.add_get(API + "/hubs/{account}/settlements", hub_settlements)
    app.router.add_get(API + "/hubs/{account}/holders", hub_holders)
    app.router.add_get(API + "/messages/{address}", message_at)
    app.router.add_get(API + "/proofs/{digest}", proof_of)
    app.router.add_get("/", page)

    async def cleanup(_app: web.Application) -> None:
        executor.shutdown(wait=True)

    app.on_cleanup.append(cleanup)
    return app


def open_fleet(config: Any, settings: FleetSettings) -> tuple[Engine, sessionmaker[Session], Authorizer]:
    """The fleet's database (migrated) and who may upload to it, from the configuration."""
    from fleet.db import open_fleet_database

    engine, factory = open_fleet_database(settings.database_url)
    chain = None
    if settings.rpc_url:
        from fleet.auth import chain_hubs
        from settlement.settings import ethereum_settings

        chain = chain_hubs(settings.rpc_url, settings.contract, ethereum_settings(config))
    return engine, factory, Authorizer(factory, chain)


def serve(config: Any, settings: FleetSettings) -> None:
    """`scb fleet serve`: until SIGINT/SIGTERM, beating the heartbeat "fleet" (a probe of its database)."""
    from scb.loop import Heartbeat

    engine, factory, authorizer = open_fleet(config, settings)
    sock = http.listen_socket(settings.host, settings.port, "fleet")
    port = sock.getsockname()[1]
    app = create_app(settings, engine, factory, authorizer)
    fleet = app[FLEET_KEY]

    async def probe() -> None:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await fleet.db(ping)

    http.beat_while_serving(app, Heartbeat(config.data_dir, "fleet"), probe)

    async def announce(_app: web.Application) -> None:
        log.info("fleet server on http://%s:%d (database %s)", settings.host, port, engine.url.render_as_string())

    app.on_startup.append(announce)
    try:
        http.run_app(app, sock=sock)
    finally:
        engine.dispose()


@dataclass
class RunningFleet:
    url: str
    engine: Engine
    factory: sessionmaker[Session]
    _server: http.BackgroundServer

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RunningFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(config: Any, settings: FleetSettings) -> RunningFleet:
    """The fleet on its own event loop in a daemon thread (tests, benchmarks); port 0 picks a free port."""
    from dataclasses import replace

    engine, factory, authorizer = open_fleet(config, settings)
    sock = http.listen_socket(settings.host, settings.port, "fleet")
    actual = replace(settings, port=sock.getsockname()[1])
    server = http.serve_in_thread(create_app(actual, engine, factory, authorizer), sock, name="fleet")
    return RunningFleet(server.url, engine, factory, server)
