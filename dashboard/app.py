"""The dashboard's web server (aiohttp): one page and read-only JSON endpoints.

    GET /                          the page (static/index.html, static/dashboard.js, static/dashboard.css)
    GET /api/status                the hub at a glance: `scb status`'s data, community time, the page's settings
    GET /api/energy?bucket=window|hour&points=N
                                   generation against each holder's consumption per publish window or hour
    GET /api/messages?limit=N&before=ID
                                   recent MAM messages: address, state, readings, settled, last verification
    GET /api/verify?address=ADDR   `scb verify ADDRESS` for one of this hub's messages: steps and verdict
    GET /api/settlements?limit=N&before=PERIOD
                                   settlement periods with their transactions
    GET /api/holders               holders' standing, equity and debt (chain, else the last known values)
    GET /api/decisions?limit=N&before=ID
                                   supply decisions (changes only), newest first
    GET /holder/<party>            a household's own page (static/holder.html, holder.js)
    GET /api/holder?party=ID       its standing, bills (with the readings behind them), payments and deposits
    GET /api/holder/readings?party=ID&period=N
                                   its readings of one period, for their proofs
    GET /api/proof?reading=ID      the proof file `scb proof export READING_ID` writes, as a download
    GET /api/export/readings.csv, /api/export/bills.csv  ?holder=ID&from=TIME&to=TIME
                                   the CSV files `scb export` writes (hub.export), as downloads

Why read-only GETs only: the dashboard has no login; anything that changes the hub (settling, paying, repossessing)
stays with the operator's commands and the holders' own wallets. Every error is a JSON object
`{"error": "..."}` with its status (400 for a bad request, malformed HTTP included), never a traceback; a Host
other than the dashboard's names and a foreign Origin get 403 (scb.http, the edge every SCB server shares).
"""
from __future__ import annotations

import asyncio
import io
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from dashboard import data
from dashboard.household import MAX_READINGS, HouseholdPages, period_readings
from dashboard.settings import MAX_POINTS, BUCKETS, DashboardSettings
from mam_client.crypto.trits import is_trytes
from scb import http
from scb.config import Config
from scb.errors import BadRequest, ChainRefused, ScbError, TransportError
from scb.loop import Heartbeat
from scb.timefmt import utc_iso, utc_iso_ms


STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 200
DEFAULT_LIMIT = 20
#: verification results kept for the messages list (the newest; a click always verifies again)
VERIFY_CACHE = 256
#: bytes of a CSV download sent at a time
EXPORT_CHUNK = 65536
SECURITY_HEADERS = {
    # no external anything: the page works offline on a Pi in the field, and nothing can be injected from afar
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Verification:
    """The newest verification of one address."""

    result: dict[str, Any]
    at: float


class Verifier:
    """Runs `scb verify ADDRESS` (hub.verification.verify_hub_address) for the hub's own messages.

    Why one at a time: a verification walks the channel and asks the node and the chain; on a Pi, several at
    once would starve the hub's own processes. Why only the hub's messages: an unknown address makes verification
    walk the whole channel looking for it, which the command line is for.
    """

    def __init__(self, config: Config, factory: sessionmaker[Session], transport: Any = None) -> None:
        self.config = config
        self.factory = factory
        self.transport = transport
        self._results: OrderedDict[str, Verification] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, address: str) -> dict[str, Any]:
        from hub.verification import verify_hub_address

        try:
            report = verify_hub_address(self.config, address, factory=self.factory, transport=self.transport)
            result = report.to_json()
        except ScbError as exc:  # no system or contract yet, unreadable side key, ...: could not check
            result = {"subject": f"address {address}", "verdict": "COULD NOT CHECK", "exit_code": 2,
                      "reason": str(exc), "steps": [{"step": "setup", "ok": False, "detail": str(exc)}]}
        result["verified_at"] = utc_iso(time.time())
        with self._lock:
            self._results[address] = Verification(result, time.time())
            self._results.move_to_end(address)
            while len(self._results) > VERIFY_CACHE:
                self._results.popitem(last=False)
        return result

    def last(self, address: str | None) -> dict[str, Any] | None:
        """The verdict of the newest verification of `address` in this process, if any."""
        if address is None:
            return None
        with self._lock:
            found = self._results.get(address)
        if found is None:
            return None
        return {"verdict": found.result["verdict"], "reason": found.result["reason"],
                "verified_at": found.result["verified_at"]}


@dataclass
class Dashboard:
    """What the handlers share."""

    config: Config
    factory: sessionmaker[Session]
    settings: DashboardSettings
    window_ms: int
    hub_id: str
    community: Any  # settlement.clock.CommunityTime
    board: data.HolderBoard
    verifier: Verifier
    households: HouseholdPages
    verify_slot: asyncio.Semaphore | None = None


DASHBOARD = web.AppKey("dashboard", Dashboard)


# ------------------------------------------------------------------------------------------------ parameters


def _params(request: web.Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, each at most once; an unknown one is refused (a typo must not be ignored)."""
    query = request.rel_url.query
    unknown = sorted(set(query) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise BadRequest(f"unknown parameter {', '.join(unknown)}; known: {known}")
    out: dict[str, str] = {}
    for key in query:
        values = query.getall(key)
        if len(values) != 1:
            raise BadRequest(f"parameter {key} given {len(values)} times")
        out[key] = values[0]
    return out


def _int(params: dict[str, str], key: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"{key} must be a whole number from {low} to {high}, not {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{key} must be a whole number from {low} to {high}, not {value}")
    return value


async def _blocking(fn: Callable[[], Any]) -> Any:
    """Database and chain work off the event loop, so one slow answer does not stall the others."""
    return await asyncio.to_thread(fn)


# ------------------------------------------------------------------------------------------------ handlers


async def index(request: web.Request) -> web.StreamResponse:
    # ?verify=ADDRESS: the page verifies that address when it opens; other parameters (a link's tracking tags)
    # are the browser's business and ignored
    if len(request.rel_url.query.getall("verify", [])) > 1:
        raise BadRequest("parameter verify given more than once")
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def api_status(request: web.Request) -> web.Response:
    _params(request, set())
    d = request.app[DASHBOARD]

    def gather() -> dict[str, Any]:
        from hub.status import hub_status

        status = hub_status(d.config, d.factory)  # exactly what `scb status --json` prints
        now_ms = d.community.now_ms()
        return {"hub": d.hub_id, "community_now": utc_iso_ms(now_ms) if now_ms is not None else None,
                "status": status,
                "dashboard": {"refresh_s": d.settings.refresh_s, "chart_bucket": d.settings.chart_bucket,
                              "chart_points": d.settings.chart_points, "window_s": d.window_ms / 1000}}

    return web.json_response(await _blocking(gather))


async def api_energy(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"bucket", "points"})
    bucket = params.get("bucket", d.settings.chart_bucket)
    if bucket not in BUCKETS:
        raise BadRequest(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket[:40]!r}")
    points = _int(params, "points", d.settings.chart_points, 2, MAX_POINTS)
    assert points is not None
    return web.json_response(await _blocking(lambda: data.energy_series(d.factory, bucket, points, d.window_ms)))


async def api_messages(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"limit", "before"})
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int(params, "before", None, 1, 2**62)
    assert limit is not None
    messages = await _blocking(lambda: data.recent_messages(d.factory, limit, before))
    for m in messages:
        m["verification"] = d.verifier.last(m["address"])
    return web.json_response({"messages": messages})


async def api_verify(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"address"})
    address = params.get("address")
    if address is None:
        raise BadRequest("give the address: /api/verify?address=<81 trytes>")
    if not is_trytes(address, 81):
        raise BadRequest("an address is 81 trytes (A-Z and 9)")
    if not await _blocking(lambda: data.message_address_known(d.factory, address)):
        raise web.HTTPNotFound(text=f"this hub published no message at {address}; `scb verify {address}` checks "
                                    "any address")
    if d.verify_slot is None:
        d.verify_slot = asyncio.Semaphore(1)
    async with d.verify_slot:
        result = await _blocking(lambda: d.verifier.verify(address))
    return web.json_response(result)


async def api_settlements(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"limit", "before"})
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int(params, "before", None, 1, 2**62)
    assert limit is not None
    return web.json_response(await _blocking(lambda: data.settlements(d.factory, limit, before)))


async def api_holders(request: web.Request) -> web.Response:
    _params(request, set())
    d = request.app[DASHBOARD]
    return web.json_response(await _blocking(d.board.holders))


async def api_decisions(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"limit", "before"})
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int(params, "before", None, 1, 2**62)
    assert limit is not None
    return web.json_response({"decisions": await _blocking(lambda: data.supply_decisions(d.factory, limit, before))})


# ------------------------------------------------------------------------------------------------ households


def _party(value: str | None) -> str:
    from settlement.settings import PARTY_RE

    if value is None:
        raise BadRequest("give the holder: party=<id> (e.g. h1)")
    if PARTY_RE.fullmatch(value) is None:
        raise BadRequest(f"{value[:40]!r} is not a party id (letters, digits, '_', '.', '-')")
    return value


async def holder_page(request: web.Request) -> web.StreamResponse:
    _party(request.match_info["party"])
    return web.FileResponse(STATIC_DIR / "holder.html", headers={"Cache-Control": "no-cache"})


async def api_holder(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    party = _party(_params(request, {"party"}).get("party"))
    page = await _blocking(lambda: d.households.page(party, d.board.holders()))
    if page is None:
        raise web.HTTPNotFound(text=f"no holder {party} in this hub's system")
    return web.json_response(page)


async def api_holder_readings(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    params = _params(request, {"party", "period", "limit"})
    party = _party(params.get("party"))
    period = _int(params, "period", None, 1, 2**62)
    if period is None:
        raise BadRequest("give the period: period=<id>")
    limit = _int(params, "limit", MAX_READINGS, 1, MAX_READINGS)
    assert limit is not None
    return web.json_response(await _blocking(lambda: period_readings(d.factory, party, period, limit)))


async def api_proof(request: web.Request) -> web.Response:
    """The proof file of one settled reading, byte for byte what `scb proof export` prints."""
    from hub.verification import export_proof, hub_channel_mode
    from scb.errors import UsageError
    from settlement.verify import dumps

    d = request.app[DASHBOARD]
    reading = _int(_params(request, {"reading"}), "reading", None, 1, 2**62)
    if reading is None:
        raise BadRequest("give the reading: reading=<id>")

    def build() -> str:
        try:
            return str(dumps(export_proof(d.factory, reading, hub_channel_mode(d.config))))
        except UsageError as exc:  # no such reading, or not settled yet
            raise BadRequest(str(exc), status=404) from None

    body = await _blocking(build)
    return web.Response(text=body, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="proof-{reading}.json"'})


async def api_export(request: web.Request) -> web.StreamResponse:
    """`scb export readings|bills` as a download, streamed from a temporary file (a year of readings is large)."""
    from hub.export import KINDS, export_rows, parse_time, write_csv
    from scb.errors import UsageError

    d = request.app[DASHBOARD]
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise web.HTTPNotFound(text=f"export one of {', '.join(f'{k}.csv' for k in KINDS)}")
    params = _params(request, {"holder", "from", "to"})
    holder = _party(params["holder"]) if "holder" in params else None

    def produce() -> Any:
        """The whole CSV into a temporary file, in one thread (a database session stays in the thread that
        opened it), so that the download streams from disk and never sits in memory."""
        try:
            rows = export_rows(kind, d.config, d.factory, holder, parse_time("from", params.get("from")),
                               parse_time("to", params.get("to")))
            out = tempfile.TemporaryFile("w+b")
            text_out = io.TextIOWrapper(out, encoding="utf-8", newline="")
            write_csv(rows, KINDS[kind], text_out)
            text_out.flush()
            text_out.detach()
            out.seek(0)
            return out
        except UsageError as exc:
            raise BadRequest(str(exc)) from None
        except (TransportError, ChainRefused) as exc:
            raise BadRequest(f"the chain cannot be read for the bills' amounts: {exc}", status=503) from None

    out = await _blocking(produce)
    name = f"{kind}-{holder}.csv" if holder else f"{kind}.csv"
    try:
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                               "Content-Disposition": f'attachment; filename="{name}"'})
        await response.prepare(request)
        while part := await _blocking(lambda: out.read(EXPORT_CHUNK)):
            await response.write(part)
    finally:
        out.close()
    await response.write_eof()
    return response


# ------------------------------------------------------------------------------------------------ middlewares


@web.middleware
async def page_headers(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Security headers on every answer, errors included, and no caching of the API's live data.

    Runs outside the edge (`scb.http.edge_middleware`), which has already turned any failure into a JSON answer.
    """
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def edge_policy(settings: DashboardSettings) -> http.EdgePolicy:
    """Who may read the dashboard: Host among loopback names, `dashboard.host` and `dashboard.allowed_hosts`, no
    foreign Origin (scb.http). Why check the Host header: a web page elsewhere can point its own host name at
    127.0.0.1 (DNS rebinding) and read the dashboard, every household's consumption, as if it were its own."""
    return http.EdgePolicy.local("the dashboard", settings.host, settings.allowed_hosts, "dashboard.allowed_hosts")


# ------------------------------------------------------------------------------------------------ the app


def create_app(config: Config, factory: sessionmaker[Session], settings: DashboardSettings, *,
               transport: Any = None, client_for: Callable[[], Any] | None = None,
               heartbeat: Heartbeat | None = None) -> web.Application:
    """The dashboard application over `factory` (a read-only session factory, see data.open_read_database).

    `transport` (tangle node client for verification) and `client_for` (chain client for holders) default to the
    configured ones; tests pass their own. With `heartbeat` (the `scb dashboard` process), the holders' chain
    reading runs as a collector thread under the failure policy, and the server beats from its event loop.
    """
    from energy_manager.settings import load_energy_settings
    from settlement.clock import CommunityTime

    energy = load_energy_settings(config)
    board = data.HolderBoard(config, factory, settings.chain_cache_s, settings.chain_timeout_s, client_for)
    app = web.Application(middlewares=[page_headers, http.edge_middleware(edge_policy(settings))])
    app[DASHBOARD] = Dashboard(config=config, factory=factory, settings=settings,
                               window_ms=energy.publish_window_ms, hub_id=energy.hub_id,
                               community=CommunityTime(energy, factory), board=board,
                               verifier=Verifier(config, factory, transport),
                               households=HouseholdPages(factory, board.client_for, settings.chain_cache_s))
    app.router.add_get("/", index)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/energy", api_energy)
    app.router.add_get("/api/messages", api_messages)
    app.router.add_get("/api/verify", api_verify)
    app.router.add_get("/api/settlements", api_settlements)
    app.router.add_get("/api/holders", api_holders)
    app.router.add_get("/api/decisions", api_decisions)
    app.router.add_get("/holder/{party}", holder_page)
    app.router.add_get("/api/holder", api_holder)
    app.router.add_get("/api/holder/readings", api_holder_readings)
    app.router.add_get("/api/proof", api_proof)
    app.router.add_get("/api/export/{kind}.csv", api_export)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    if heartbeat is not None:
        _run_collectors(app, board, factory, heartbeat)
    return app


def _run_collectors(app: web.Application, board: data.HolderBoard, factory: sessionmaker[Session],
                    heartbeat: Heartbeat) -> None:
    stop = threading.Event()

    async def start(_app: web.Application) -> None:
        board.start(heartbeat, stop)

    async def finish(_app: web.Application) -> None:
        stop.set()

    def probe_database() -> None:
        with factory() as session:
            session.execute(text("SELECT 1"))

    async def probe() -> None:
        await _blocking(probe_database)

    app.on_startup.append(start)
    app.on_cleanup.append(finish)
    http.beat_while_serving(app, heartbeat, probe)
