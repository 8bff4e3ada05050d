"""The dashboard's HTTP edge (scb.http) on a real socket, spoken to with raw bytes: malformed HTTP is a JSON 400
without a traceback, only the dashboard's own names and origin are answered, and the server carries on.

An empty hub database is enough here: the edge answers before any data is read.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.data import open_read_database
from dashboard.settings import dashboard_settings
from scb import http
from scb.config import Config
from tests.raw_http import BODY_CASES, assert_no_traceback, http_request, malformed_requests, send_raw


def serve(tmp_path: Path, **settings: Any) -> http.BackgroundServer:
    config = Config(data={"hub": {"data_dir": str(tmp_path)}, "dashboard": {"allowed_hosts": ["hub.lan"]}})
    app = create_app(config, open_read_database(config), replace(dashboard_settings(config), **settings),
                     transport=object(), client_for=lambda: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return http.serve_in_thread(app, sock, name="dashboard-edge")


@pytest.fixture()
def dashboard(tmp_path: Path, caplog: pytest.LogCaptureFixture,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[http.BackgroundServer]:
    monkeypatch.delenv("SCB_DEBUG", raising=False)
    caplog.set_level(logging.DEBUG)
    with serve(tmp_path) as server:
        yield server


def own(server: http.BackgroundServer) -> str:
    return f"127.0.0.1:{server.port}"


def messages_ok(server: http.BackgroundServer) -> bool:
    r = send_raw(server.url, http_request("GET", "/api/messages", own(server)))
    return r.status == 200 and r.json() == {"messages": []}


@pytest.mark.parametrize("name", list(malformed_requests("/api/messages", "127.0.0.1")))
def test_malformed_http_is_a_json_400_and_the_dashboard_carries_on(
        dashboard: http.BackgroundServer, caplog: pytest.LogCaptureFixture, name: str) -> None:
    raw = malformed_requests("/api/messages", own(dashboard), method="GET")[name]
    r = send_raw(dashboard.url, raw)
    if name in BODY_CASES:  # a GET whose body the dashboard never reads: answered, and nothing logged about it
        assert r.status == 200 and r.json() == {"messages": []}
    else:
        assert r.status == 400 and r.json()["error"], (name, r.body)
    assert_no_traceback(caplog.records)
    assert messages_ok(dashboard)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8720", "localhost.evil.example"])
def test_a_foreign_host_is_refused_with_the_pages_headers(dashboard: http.BackgroundServer, host: str) -> None:
    for path in ("/", "/api/messages", "/static/dashboard.js", "/api/nothing"):
        r = send_raw(dashboard.url, http_request("GET", path, host))
        assert r.status == 403, (host, path)
        assert "dashboard.allowed_hosts" in r.json()["error"] and "127.0.0.1" in r.json()["error"]
        assert "default-src 'self'" in r.headers["content-security-policy"]


def test_own_names_are_answered(dashboard: http.BackgroundServer) -> None:
    for host in (own(dashboard), f"localhost:{dashboard.port}", f"[::1]:{dashboard.port}", "hub.lan:8720"):
        assert send_raw(dashboard.url, http_request("GET", "/api/messages", host)).status == 200, host


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_refused(dashboard: http.BackgroundServer, origin: str) -> None:
    r = send_raw(dashboard.url, http_request("GET", "/api/messages", own(dashboard), {"Origin": origin}))
    assert r.status == 403 and "origin" in r.json()["error"]


def test_the_pages_own_origin_is_answered(dashboard: http.BackgroundServer) -> None:
    r = send_raw(dashboard.url, http_request("GET", "/api/messages", own(dashboard),
                                             {"Origin": f"http://{own(dashboard)}"}))
    assert r.status == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_writes_stay_405(dashboard: http.BackgroundServer, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = send_raw(dashboard.url, http_request("POST", "/api/messages", own(dashboard), headers, b"{}"))
    assert r.status == 405 and r.json()["error"] and "GET" in r.headers["allow"]


def test_a_dashboard_on_every_interface_answers_ip_hosts_not_foreign_names(tmp_path: Path) -> None:
    with serve(tmp_path, host="0.0.0.0") as server:
        assert send_raw(server.url, http_request("GET", "/api/messages", "192.168.1.20:8720")).status == 200
        assert send_raw(server.url, http_request("GET", "/api/messages", "evil.example")).status == 403
        assert send_raw(server.url, http_request("GET", "/api/messages", socket.gethostname())).status == 200
