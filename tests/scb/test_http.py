"""scb.http, the edge every server shares: a tiny app on a real socket, spoken to with raw bytes."""
from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from aiohttp import web

from scb import http
from tests.raw_http import assert_no_traceback, http_request, malformed_requests, send_raw

TOKEN = "s3cret-token-for-tests-0123456789"


async def echo(request: web.Request) -> web.Response:
    body = await http.read_body(request, 64)
    return web.json_response({"method": request.method, "bytes": len(body)})


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug with a message")


def make_app(policy: http.EdgePolicy) -> web.Application:
    app = web.Application(middlewares=[http.edge_middleware(policy)])
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/boom", boom)
    app.router.add_get("/only-get", echo)
    return app


def bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@pytest.fixture()
def server(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[http.BackgroundServer]:
    monkeypatch.delenv("SCB_DEBUG", raising=False)
    caplog.set_level(logging.DEBUG)
    policy = http.EdgePolicy.local("the test API", "127.0.0.1", ["hub.example"], "test.allowed_hosts",
                                   token=TOKEN, token_hint="see the test")
    with http.serve_in_thread(make_app(policy), bound(), name="test-edge") as running:
        yield running


def host(server: http.BackgroundServer) -> str:
    return f"127.0.0.1:{server.port}"


def authorised(**more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **more}


def test_a_good_request_passes(server: http.BackgroundServer) -> None:
    r = send_raw(server.url, http_request("POST", "/echo", host(server), authorised(), b"{}"))
    assert r.status == 200 and r.json() == {"method": "POST", "bytes": 2}


@pytest.mark.parametrize("name", list(malformed_requests("/echo", "127.0.0.1")))
def test_malformed_http_is_a_json_400_without_traceback_and_the_server_carries_on(
        server: http.BackgroundServer, caplog: pytest.LogCaptureFixture, name: str) -> None:
    request = malformed_requests("/echo", host(server), authorised())[name]
    r = send_raw(server.url, request)
    assert r.status == 400, (r.status, r.body)
    error = r.json()["error"]
    assert isinstance(error, str) and error and "Traceback" not in error
    assert_no_traceback(caplog.records)
    after = send_raw(server.url, http_request("GET", "/echo", host(server)))
    assert after.status == 200 and after.json()["method"] == "GET"
    assert_no_traceback(caplog.records)


def test_what_each_malformed_request_is_told(server: http.BackgroundServer) -> None:
    told = {name: send_raw(server.url, raw).json()["error"]
            for name, raw in malformed_requests("/echo", host(server), authorised()).items()}
    assert "Content-Length" in told["negative content-length"]
    assert "chunk size" in told["bad chunk size"]
    assert "longer than 8190 bytes" in told["header line too long"]
    assert "not an HTTP request" in told["not http"]
    assert "gzip" in told["gzip over a plain body"] and "cannot be read" in told["gzip over a plain body"]


def test_a_fault_of_the_handler_is_a_json_500_and_one_log_line(
        server: http.BackgroundServer, caplog: pytest.LogCaptureFixture) -> None:
    r = send_raw(server.url, http_request("GET", "/boom", host(server)))
    assert r.status == 500 and "internal error" in r.json()["error"]
    assert "a bug with a message" not in r.json()["error"]  # details go to the log, not to the client
    assert_no_traceback(caplog.records)
    assert any("RuntimeError: a bug with a message" in rec.getMessage() for rec in caplog.records)


def test_scb_debug_logs_the_traceback(server: http.BackgroundServer, caplog: pytest.LogCaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCB_DEBUG", "1")
    send_raw(server.url, http_request("GET", "/boom", host(server)))
    assert any(rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize("path, method, status", [("/nothing", "GET", 404), ("/only-get", "DELETE", 405)])
def test_routing_errors_are_json(server: http.BackgroundServer, path: str, method: str, status: int) -> None:
    r = send_raw(server.url, http_request(method, path, host(server), authorised()))
    assert r.status == status and r.json()["error"]
    if status == 405:
        assert "GET" in r.headers["allow"]


@pytest.mark.parametrize("host_header", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "[::2]:1"])
def test_a_foreign_host_is_refused(server: http.BackgroundServer, host_header: str) -> None:
    for method, headers in (("GET", {}), ("POST", authorised())):
        r = send_raw(server.url, http_request(method, "/echo", host_header, headers, b"{}"))
        assert r.status == 403, (host_header, method, r.body)
        error = r.json()["error"]
        assert "127.0.0.1" in error and "test.allowed_hosts" in error


@pytest.mark.parametrize("host_header", ["localhost", "LOCALHOST:1234", "[::1]:9", "127.0.0.1", "hub.example",
                                         "hub.example.:8"])
def test_own_names_are_accepted(server: http.BackgroundServer, host_header: str) -> None:
    assert send_raw(server.url, http_request("GET", "/echo", host_header)).status == 200


def test_a_request_without_host_is_refused(server: http.BackgroundServer) -> None:
    r = send_raw(server.url, b"GET /echo HTTP/1.0\r\n\r\n")
    assert r.status == 400 and "Host" in r.json()["error"]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://{host}",
                                    "file://", "http://localhost:{port}"])
def test_a_foreign_origin_is_refused(server: http.BackgroundServer, origin: str) -> None:
    origin = origin.format(host=host(server), port=server.port)
    for method, headers in (("GET", {"Origin": origin}), ("POST", authorised(Origin=origin))):
        r = send_raw(server.url, http_request(method, "/echo", host(server), headers, b"{}"))
        assert r.status == 403 and "origin" in r.json()["error"], (origin, method)


def test_the_servers_own_origin_is_accepted(server: http.BackgroundServer) -> None:
    own = f"http://{host(server)}"
    r = send_raw(server.url, http_request("POST", "/echo", host(server), authorised(Origin=own), b"{}"))
    assert r.status == 200
    r = send_raw(server.url, http_request("GET", "/echo", f"localhost:{server.port}",
                                          {"Origin": f"http://localhost:{server.port}"}))
    assert r.status == 200


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", f"Bearer {TOKEN}x",
                                           f"Bearer {TOKEN[:-1]}", "Bearer wrong"])
def test_a_write_without_the_token_is_refused(server: http.BackgroundServer, caplog: pytest.LogCaptureFixture,
                                              authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    r = send_raw(server.url, http_request("POST", "/echo", host(server), headers, b"{}"))
    assert r.status == 401 and "see the test" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in caplog.text and TOKEN not in r.body.decode()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp"])
def test_a_write_that_is_not_json_is_refused(server: http.BackgroundServer, content_type: str | None) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    r = send_raw(server.url, http_request("POST", "/echo", host(server), headers, b"{}"))
    assert r.status == 415 and "application/json" in r.json()["error"]


def test_json_with_a_charset_is_json(server: http.BackgroundServer) -> None:
    r = send_raw(server.url, http_request("POST", "/echo", host(server),
                                          authorised(**{"Content-Type": "application/json; charset=utf-8"}), b"{}"))
    assert r.status == 200


def test_body_limit_by_length_and_while_reading(server: http.BackgroundServer) -> None:
    r = send_raw(server.url, http_request("POST", "/echo", host(server), authorised(), b"x" * 65))
    assert r.status == 413 and "65 bytes" in r.json()["error"]
    chunked = b"41\r\n" + b"x" * 65 + b"\r\n0\r\n\r\n"
    r = send_raw(server.url, http_request("POST", "/echo", host(server),
                                          authorised(**{"Transfer-Encoding": "chunked"}), chunked))
    assert r.status == 413 and "more than 64 bytes" in r.json()["error"]


def test_the_token_is_not_in_the_policys_repr() -> None:
    policy = http.EdgePolicy.local("x", "127.0.0.1", [], "k", token=TOKEN)
    assert TOKEN not in repr(policy) and TOKEN not in str(policy)


def test_allowed_hosts() -> None:
    assert http.allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert http.allowed_hosts("10.0.0.5", ["Hub.Local", "[fd00::1]"]) == {
        "127.0.0.1", "localhost", "::1", "10.0.0.5", "hub.local", "fd00::1"}
    machine = socket.gethostname().lower()
    assert machine in http.allowed_hosts("0.0.0.0") and "0.0.0.0" not in http.allowed_hosts("0.0.0.0")
    wildcard = http.EdgePolicy.local("x", "0.0.0.0", [], "k")
    assert wildcard.ip_hosts and not http.EdgePolicy.local("x", "127.0.0.1", [], "k").ip_hosts
    assert http.EdgePolicy.local("x", "127.0.0.1", ["*"], "k").hosts is None


@pytest.mark.parametrize("value, expected", [
    ("localhost", ("localhost", None)), ("LocalHost:8710", ("localhost", 8710)), ("[::1]:80", ("::1", 80)),
    ("[::1]", ("::1", None)), ("::1", ("::1", None)), ("hub.local.", ("hub.local", None)),
    ("127.0.0.1:x", ("127.0.0.1", None)),
])
def test_host_name(value: str, expected: tuple[str, int | None]) -> None:
    assert http.host_name(value) == expected


def test_a_wildcard_server_accepts_ip_hosts_but_not_foreign_names() -> None:
    policy = http.EdgePolicy.local("the test API", "0.0.0.0", [], "k")
    with http.serve_in_thread(make_app(policy), bound(), name="test-wildcard") as running:
        assert send_raw(running.url, http_request("GET", "/echo", "192.168.1.20:8710")).status == 200
        assert send_raw(running.url, http_request("GET", "/echo", "evil.example")).status == 403


def test_the_open_policy_checks_nothing_but_still_answers_json() -> None:
    with http.serve_in_thread(make_app(http.OPEN), bound(), name="test-open") as running:
        r = send_raw(running.url, http_request("POST", "/echo", "evil.example", {"Origin": "http://evil.example"},
                                               b"{}"))
        assert r.status == 200
        assert send_raw(running.url, http_request("GET", "/nothing", "x")).json()["error"]


def test_listen_socket_names_the_setting_when_the_port_is_taken_or_the_host_unknown() -> None:
    from scb.errors import ConfigError

    taken = http.listen_socket("127.0.0.1", 0, "fleet")
    port = taken.getsockname()[1]
    try:
        assert taken.getblocking() is False
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port} \(fleet.host, fleet.port\)"):
            http.listen_socket("127.0.0.1", port, "fleet")
    finally:
        taken.close()
    with pytest.raises(ConfigError, match=r"fleet.host 'no-such-host.invalid' cannot be resolved"):
        http.listen_socket("no-such-host.invalid", 8730, "fleet")
