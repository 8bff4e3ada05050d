"""The HTTP edge every SCB server shares (the tangle node, the MAM client's API, the dashboard).

What a client of any of them sees, whatever it sends:
* every refusal is a 4xx with a JSON body `{"error": "..."}` (and a fault of the server a 500 with one), never a
  plain-text page or a traceback; the server's log gets one line, never a traceback (`SCB_DEBUG=1` shows one for a
  fault of the server itself);
* that includes requests aiohttp refuses before any handler runs (a negative Content-Length, a bad chunk size, a
  header line over 8190 bytes, TLS on the HTTP port): `EdgeRequestHandler` answers those, and the connection is
  closed, the server carries on;
* a body that cannot be decoded (`Content-Encoding: gzip` over a plain body) is a 400, not a 500.

On top of that an `EdgePolicy` says who may talk to a server at all (the MAM API and the dashboard use one; the
tangle node is open like IRI):
* `Host` must be one of the server's names (loopback names and the configured host by default). Why: a web page
  elsewhere can point a name of its own at 127.0.0.1 (DNS rebinding) and read or write a loopback service as if it
  were its own origin; the browser still sends that foreign name in `Host`.
* a request carrying a foreign `Origin` is refused. Why: a page may send "simple" cross-origin requests (a form
  POST) without asking; the browser marks them with its own origin.
* a write (any method but GET/HEAD/OPTIONS) needs `Content-Type: application/json` (a browser cannot send that
  cross-origin without a CORS preflight, which these servers never grant) and, when the policy has a token,
  `Authorization: Bearer <token>`.

Servers run through `run_app` / `serve_in_thread` here instead of `aiohttp.web.run_app`, because the parse-error
answer lives in the connection's `RequestHandler`, which only the runner can choose.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from yarl import URL

from scb.errors import BadRequest, ConfigError

if TYPE_CHECKING:
    from scb.loop import Heartbeat

log = logging.getLogger("scb.http")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: bind addresses that mean "every interface": the configured host is then no name a client would use
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: how much of a malformed request's own words go back into an answer or a log line
_MAX_DETAIL = 160

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def debug_tracebacks() -> bool:
    """`SCB_DEBUG=1`: log the traceback of a server fault (off by default: a log is read by people, not debuggers)."""
    return bool(os.environ.get("SCB_DEBUG"))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one error shape of every SCB server: `{"error": message}` with `status`."""
    return web.json_response({"error": message}, status=status, headers=headers)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL] + "..."


def _log_fault(what: str, exc: BaseException | None) -> None:
    """A fault of the server itself: one line, or the traceback under SCB_DEBUG."""
    if exc is not None and debug_tracebacks():
        log.error("%s", what, exc_info=exc)
    elif exc is not None:
        log.error("%s: %s: %s (set SCB_DEBUG=1 for a traceback)", what, type(exc).__name__, _one_line(str(exc)))
    else:
        log.error("%s", what)


# ------------------------------------------------------------------------------------------------ bodies


def _client_fault(exc: BaseException | None) -> bool:
    """A request the client got wrong (framing, encoding), as opposed to a fault of the server."""
    return isinstance(exc, (HttpProcessingError, web.RequestPayloadError))


def _payload_reason(exc: BaseException) -> str:
    """What is wrong with a body aiohttp could not read, in the words of the parser that found it."""
    cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
    message = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
    return _one_line(str(message)) or type(cause).__name__


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes, whatever the client declared.

    Raises BadRequest: 413 over the limit (from Content-Length before reading, or while reading a chunked body),
    400 when the body cannot be decoded (a declared Content-Encoding that does not match, a broken chunk).
    """
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the body is {request.content_length} bytes, the limit is {limit}", status=413)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the body is more than {limit} bytes", status=413)
            chunks.append(chunk)
    except web.RequestPayloadError as exc:
        raise BadRequest(f"the body cannot be read: {_payload_reason(exc)}") from None
    return b"".join(chunks)


# ------------------------------------------------------------------------------------------------ who may ask


def host_name(host: str) -> tuple[str, int | None]:
    """A Host header value as (lower-case name without brackets or trailing dot, port or None)."""
    host = host.strip().lower()
    port: str | None = None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        name, rest = host[1:end], host[end + 1:]
        if rest.startswith(":"):
            port = rest[1:]
    elif host.count(":") == 1:
        name, port = host.split(":")
    else:
        name = host  # a name, an IPv4 address, or a bare IPv6 address (no port possible)
    number = int(port) if port and port.isascii() and port.isdigit() and len(port) <= 5 else None
    return name.rstrip("."), number


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server answers to by default: loopback names, the host it was told to listen on, and the
    names in `extra` (a setting). A server on every interface (0.0.0.0) also answers to this machine's host name
    and its `.local` (mDNS) name."""
    names = set(LOOPBACK_NAMES)
    names.update(host_name(e)[0] for e in extra if e.strip())
    bind = bind_host.strip().lower().strip("[]")
    if bind in WILDCARD_HOSTS:
        machine = socket.gethostname().lower().rstrip(".")
        if machine:
            names.update({machine, f"{machine.split('.')[0]}.local"})
    else:
        names.add(bind.rstrip("."))
    return frozenset(names)


@dataclass(frozen=True)
class EdgePolicy:
    """Who may talk to a server (see the module docstring for why each check exists).

    `hosts` None: any Host (the tangle node). `ip_hosts`: any IP-literal Host is fine too (a server on every
    interface: DNS rebinding needs a name, a page served from an IP address is that address's own origin).
    `token`: the bearer token writes need (never shown in repr). `setting`: the configuration key named in a Host
    refusal; `token_hint`: where a client finds the token, named in a token refusal.
    """

    name: str
    hosts: frozenset[str] | None = None
    ip_hosts: bool = False
    check_origin: bool = False
    json_writes: bool = False
    token: str | None = field(default=None, repr=False)
    setting: str = ""
    token_hint: str = ""

    @classmethod
    def local(cls, name: str, bind_host: str, extra_hosts: Iterable[str], setting: str, *,
              token: str | None = None, token_hint: str = "") -> EdgePolicy:
        """The standard for the hub's own APIs: Host, Origin and JSON writes checked, a token if given.

        `extra_hosts` is the server's setting (e.g. `mam.api_allowed_hosts`); `"*"` in it switches the Host check
        off (behind a reverse proxy that checks names itself)."""
        extra = [e for e in extra_hosts if e.strip()]
        hosts = None if "*" in extra else allowed_hosts(bind_host, [e for e in extra if e != "*"])
        return cls(name=name, hosts=hosts, ip_hosts=bind_host.strip().strip("[]") in WILDCARD_HOSTS,
                   check_origin=True, json_writes=True, token=token, setting=setting, token_hint=token_hint)

    def check(self, request: web.Request) -> None:
        """Raise BadRequest (4xx) when this request may not reach the handler."""
        raw_host = request.headers.get("Host")
        if raw_host is None:
            raise BadRequest("a Host header is required")
        name, port = host_name(raw_host)
        if self.hosts is not None and name not in self.hosts and not (self.ip_hosts and _is_ip(name)):
            where = f" ({self.setting} in the configuration)" if self.setting else ""
            raise BadRequest(f"{self.name} answers to the host names {', '.join(sorted(self.hosts))} only, "
                             f"not {_one_line(raw_host)!r}{where}", status=403)
        if self.check_origin and "Origin" in request.headers:
            self._check_origin(request.headers["Origin"], request.scheme, name, port)
        if request.method in SAFE_METHODS or request.match_info.http_exception is not None:
            return  # a read, or no such route or method: 404 / 405 say more than a refusal would
        if self.token is not None:
            self._check_token(request.headers.get("Authorization"))
        if self.json_writes and request.content_type != "application/json":
            raise BadRequest(f"{request.method} needs Content-Type: application/json", status=415)

    def _check_origin(self, origin: str, scheme: str, name: str, port: int | None) -> None:
        """Only the server's own origin may send Origin: the request's scheme, and the Host header's name and port
        (a page of another port on the same machine is another origin, and may be another program)."""
        value = origin.strip()
        same = False
        if value.lower().startswith(f"{scheme}://"):
            try:
                url = URL(value)
                o_host, o_port = (url.host or "").lower().rstrip("."), url.port
            except (ValueError, TypeError):
                o_host, o_port = "", None
            default = 443 if scheme == "https" else 80
            same = bool(o_host) and o_host == name and o_port == (port if port is not None else default)
        if not same:
            raise BadRequest(f"requests from other origins are refused (Origin {_one_line(origin)!r})", status=403)

    def _check_token(self, authorization: str | None) -> None:
        assert self.token is not None
        hint = f"; {self.token_hint}" if self.token_hint else ""
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise BadRequest(f"writes need Authorization: Bearer <token>{hint}", status=401)
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise BadRequest(f"the bearer token is not this server's token{hint}", status=401)


OPEN = EdgePolicy(name="this server")


# ------------------------------------------------------------------------------------------------ middleware


def _http_exception_message(exc: web.HTTPException) -> str:
    text = exc.text or ""
    return text if text and not text.startswith(f"{exc.status}:") else exc.reason


_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def edge_middleware(policy: EdgePolicy = OPEN) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Checks `policy`, then turns every failure of the handler into the JSON error shape.

    BadRequest -> its status; an aiohttp HTTPException >= 400 (404, 405, 413...) -> its status and reason; a body
    aiohttp cannot decode -> 400 (connection closed: the rest of the stream is not trustworthy); anything else ->
    500, one log line.
    """

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            policy.check(request)
            return await handler(request)
        except BadRequest as exc:
            if exc.status in (401, 403):
                log.info("%s: refused %s %s from %s: %s", policy.name, request.method, request.path,
                         request.remote, exc.message)
            headers = {"WWW-Authenticate": 'Bearer realm="scb"'} if exc.status == 401 else None
            return error_response(exc.status, exc.message, headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kept = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
            return error_response(exc.status, _http_exception_message(exc), kept)
        except web.RequestPayloadError as exc:
            response = error_response(400, f"the body cannot be read: {_payload_reason(exc)}")
            response.force_close()
            return response
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: the log gets one line, the client JSON
            _log_fault(f"{policy.name}: {request.method} {request.path} failed", exc)
            return error_response(500, f"internal error (see {policy.name}'s log)")

    return edge


# ------------------------------------------------------------------------------------------------ the protocol


class EdgeRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses in the JSON error shape, without a traceback.

    aiohttp answers a request it cannot parse (and a handler that failed outside every middleware) from
    `handle_error` with a plain-text page, and logs the parser's traceback; neither is what a client or an operator
    of an SCB server should see.
    """

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status == 504:  # the handler timed out (aiohttp's own timeout)
            text = "the request took too long"
            log.info("a request from %s timed out", request.remote)
        elif status >= 500:
            _log_fault(f"error handling a request from {request.remote}", exc)
            text = "internal error of the server (see its log)"
        else:
            text = self._describe(exc, message)
            # TLS or noise on the HTTP port is what any port sees; not worth more than a debug line
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
            log.log(level, "malformed request from %s refused (%d): %s", request.remote, status, text)
        if request.writer.output_size > 0:  # a response was half sent: nothing more can be said on this connection
            raise ConnectionError("the response was already started; closing the connection")
        response = error_response(status, text)
        response.force_close()
        return response

    def _describe(self, exc: BaseException | None, message: str | None) -> str:
        if isinstance(exc, BadHttpMethod):
            return "not an HTTP request (TLS, or another protocol, on an HTTP port?)"
        if isinstance(exc, LineTooLong):
            return f"malformed HTTP request: a request line or header is longer than {self.max_field_size} bytes"
        reason = exc.message if isinstance(exc, HttpProcessingError) else message or ""
        first = str(reason).strip().splitlines()[0].rstrip(":") if str(reason).strip() else "unreadable"
        return f"malformed HTTP request: {_one_line(first)}"

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's other error logs (a body it could not decode, read again after the handler answered; a write
        that failed): a client's fault is a debug line, a server's fault one error line."""
        exc_info = kw.get("exc_info")
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        try:
            what = (str(args[0]) % args[1:]) if args else "error"
        except (TypeError, ValueError):
            what = str(args[0])
        if _client_fault(exc):
            log.debug("%s: %s", what, _one_line(str(exc)))
        else:
            _log_fault(what, exc)


class EdgeServer(web.Server):
    """aiohttp's low-level server, making `EdgeRequestHandler` connections."""

    def __call__(self) -> web.RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `EdgeRequestHandler`s (access log off: the servers log what matters)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        # aiohttp builds its Server with the application's handler and request factory; the same, as an EdgeServer
        server = await super()._make_server()
        return EdgeServer(server.request_handler, request_factory=server.request_factory,
                          handler_cancellation=server.handler_cancellation, loop=server._loop, **server._kwargs)


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening, non-blocking socket on `host`:`port` for a server that is handed one (`serve_in_thread`,
    `run_app(sock=...)`). Why bound here and not by aiohttp: a port in use or a host that does not resolve is a
    configuration mistake the caller reports in one line before anything starts (`what` names the setting's
    owner, e.g. "tangle_node", in the ConfigError), and a test can bind port 0 and read the port it got."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"{what}.host {host!r} cannot be resolved: {exc}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({what}.host, {what}.port): {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def run_app(app: web.Application, *, host: str | None = None, port: int | None = None,
            sock: socket.socket | None = None) -> None:
    """Serve `app` until SIGINT/SIGTERM, like `aiohttp.web.run_app(..., print=None, access_log=None)` but with the
    edge's protocol handler. A port that cannot be bound raises OSError before anything is served."""

    async def main() -> None:
        runner = EdgeRunner(app, handle_signals=True)
        await runner.setup()
        try:
            site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
            await site.start()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except (web.GracefulExit, KeyboardInterrupt):
        pass


@dataclass
class BackgroundServer:
    """An app served from its own event loop in a daemon thread (tests, embedding): `url`, `port`, `stop()`."""

    url: str
    port: int
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _stop: asyncio.Event

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: web.Application, sock: socket.socket, *, name: str = "http") -> BackgroundServer:
    """Serve `app` on the bound, listening `sock` from a daemon thread; returns once it accepts connections.

    Raises whatever the application's start-up raised (e.g. a database that cannot be opened).
    """
    host, port = sock.getsockname()[:2]
    ready = threading.Event()
    started: dict[str, Any] = {}

    async def main() -> None:
        started["loop"] = asyncio.get_running_loop()
        started["stop"] = stop = asyncio.Event()
        runner = EdgeRunner(app)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            started["failure"] = exc
            ready.set()
            await runner.cleanup()
            return
        ready.set()
        await stop.wait()
        await runner.cleanup()

    def target() -> None:
        try:
            # asyncio.run also cancels whatever request tasks are still pending and shuts the executors down
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread if it is still waiting
            started.setdefault("failure", exc)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name=f"{name}-{port}", daemon=True)
    thread.start()
    # no clock here: start-up ends either way (ready, or a failure reported through `started`)
    ready.wait()
    if "failure" in started:
        raise started["failure"]
    shown = f"[{host}]" if ":" in host else host
    return BackgroundServer(url=f"http://{shown}:{port}", port=port, _loop=started["loop"], _thread=thread,
                            _stop=started["stop"])


def guard_while_serving(app: web.Application, heartbeat: "Heartbeat", name: str,
                        step: Callable[[], Awaitable[float | None]], interval_s: float) -> None:
    """Run `step` as the loop `name` under the failure policy (scb.loop.Guard.run_async) on the server's own
    event loop, from its start-up until its clean-up, `interval_s` apart (or what `step` returns, as Guard does).
    Why here: every server of the project that keeps a loop beside its requests (the heartbeat probe, the tangle
    node's pruning) needs the same start/stop wiring into aiohttp's life cycle."""
    from scb.loop import Guard

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(_app: web.Application) -> None:
        guard = Guard(name, heartbeat, interval_s=interval_s)
        tasks.append(asyncio.get_running_loop().create_task(guard.run_async(step, stop)))

    async def finish(_app: web.Application) -> None:
        stop.set()
        for task in tasks:
            await task

    app.on_startup.append(start)
    app.on_cleanup.insert(0, finish)


def beat_while_serving(app: web.Application, heartbeat: "Heartbeat", probe: Callable[[], Awaitable[None]],
                       name: str = "serving") -> None:
    """Beat `heartbeat` from the server's own event loop while it serves (scb.loop's policy).

    `probe` is a cheap check of what the server needs (e.g. one query of its database in the thread that owns
    it), so that a stuck event loop or a dead database thread stops the beat and the supervisor restarts the
    server. The probe's transient failures show in the heartbeat; anything else ends the process (exit 70).
    """
    from scb.loop import IDLE_BEAT_S

    guard_while_serving(app, heartbeat, name, probe, IDLE_BEAT_S)
