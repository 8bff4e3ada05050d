"""The MAM client's HTTP API, served by aiohttp on a real socket (aiohttp's test server; raw sockets for the edge)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from mam_client.api import MAX_BODY_BYTES, api_token, create_app
from mam_client.crypto.trits import trytes_to_ascii
from mam_client.models import OutboxMessage
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from scb import http
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from scb.errors import SecretFileError
from scb.files import write_secret_file
from tests.memory_tangle import MemoryTangle
from tests.raw_http import assert_no_traceback, http_request, malformed_requests, send_raw

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def hub_config(tmp_path: Path, **mam: Any) -> Config:
    return Config(data={"hub": {"data_dir": str(tmp_path)},
                        "mam": {"channels": {"readings": {"security": 1}}, **mam}})


@pytest.fixture()
def setup(tmp_path: Path):
    config = hub_config(tmp_path)
    engine = make_engine(config.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    publisher = Publisher(factory, mam_settings(config), MemoryTangle())
    publisher.ensure_channels()
    return factory, publisher


def run(factory, script, **mam: Any) -> Any:
    settings = mam_settings(hub_config(Path("/nonexistent"), **mam))

    async def main() -> Any:
        async with TestClient(TestServer(create_app(factory, settings, TOKEN)), headers=AUTH) as client:
            return await script(client)

    return asyncio.run(main())


def count(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage))


def test_post_then_follow_the_message(setup) -> None:
    factory, publisher = setup

    async def post(client: TestClient) -> Any:
        r1 = await client.post("/messages", json={"channel": "readings", "message": {"w": 42, "meter": "pv"}})
        r2 = await client.post("/messages", json={"channel": "readings", "trytes": "HELLO"})
        return r1.status, await r1.json(), r2.status, await r2.json()

    s1, b1, s2, b2 = run(factory, post)
    assert (s1, s2) == (202, 202) and b1["state"] == "queued" and b2["id"] == b1["id"] + 1
    with factory() as s:
        assert json.loads(trytes_to_ascii(s.get(OutboxMessage, b1["id"]).message)) == {"meter": "pv", "w": 42}
    publisher.run_once()

    async def query(client: TestClient) -> Any:
        one = await (await client.get(f"/messages/{b1['id']}")).json()
        channels = await (await client.get("/channels")).json()
        listing = await (await client.get("/channels/readings/messages?after=0&limit=10")).json()
        return one, channels, listing

    one, channels, listing = run(factory, query)
    assert one["state"] == "attached" and len(one["address"]) == 81 and len(one["root"]) == 81
    assert channels[0]["name"] == "readings" and channels[0]["attached"] == 2
    assert channels[0]["lastAddress"] == listing[-1]["address"]
    assert [m["id"] for m in listing] == [b1["id"], b2["id"]]


@pytest.mark.parametrize("body", [
    b"not json",
    b"[" * 30_000 + b"]" * 30_000,  # deep nesting under the size limit
    b"[1,2]",
    json.dumps({"channel": "readings"}).encode(),
    json.dumps({"channel": "readings", "message": 1, "trytes": "A"}).encode(),
    json.dumps({"channel": "nope", "trytes": "ABC"}).encode(),
    json.dumps({"channel": "readings", "trytes": "lowercase"}).encode(),
    json.dumps({"channel": "readings", "trytes": 5}).encode(),
    json.dumps({"channel": "readings", "trytes": ""}).encode(),
    json.dumps({"channel": "readings", "trytes": "A", "extra": 1}).encode(),
    json.dumps({"channel": "readings", "message": "x" * 40000}).encode(),
])
def test_malformed_requests_get_400_and_enqueue_nothing(setup, body: bytes) -> None:
    factory, _ = setup

    async def post(client: TestClient) -> Any:
        r = await client.post("/messages", data=body, headers={"Content-Type": "application/json"})
        return r.status, await r.json()

    status, payload = run(factory, post)
    assert status == 400 and isinstance(payload["error"], str) and payload["error"]
    assert count(factory) == 0


def test_oversized_body_gets_413(setup) -> None:
    factory, _ = setup

    async def post(client: TestClient) -> Any:
        r = await client.post("/messages", data=b"{" + b" " * MAX_BODY_BYTES + b"}",
                              headers={"Content-Type": "application/json"})
        return r.status, await r.json()

    status, payload = run(factory, post)
    assert status == 413 and "error" in payload
    assert count(factory) == 0


@pytest.mark.parametrize("path, status", [("/messages/abc", 400), ("/messages/999", 404),
                                          ("/channels/nope/messages", 404), ("/nothing", 404),
                                          ("/channels/readings/messages?limit=0", 400),
                                          ("/channels/readings/messages?after=x", 400)])
def test_bad_queries(setup, path: str, status: int) -> None:
    factory, _ = setup

    async def get(client: TestClient) -> Any:
        r = await client.get(path)
        return r.status, await r.json()

    got, payload = run(factory, get)
    assert got == status and "error" in payload


# ---- the edge: who may call, and what a malformed request gets (raw sockets, the server `scb mam-client` runs)


@pytest.fixture()
def served(setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SCB_DEBUG", raising=False)
    caplog.set_level(logging.DEBUG)
    factory, _ = setup
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    app = create_app(factory, mam_settings(hub_config(tmp_path, api_allowed_hosts=["hub.local"])), TOKEN)
    with http.serve_in_thread(app, sock, name="mam-api-test") as server:
        yield factory, server


def post(server: http.BackgroundServer, headers: dict[str, str], host: str | None = None,
         body: bytes = b'{"channel": "readings", "trytes": "HELLO"}'):
    return send_raw(server.url, http_request("POST", "/messages", host or f"127.0.0.1:{server.port}", headers, body))


JSON_AUTH = {**AUTH, "Content-Type": "application/json"}


def test_the_edge_lets_a_producer_with_the_token_in(served) -> None:
    factory, server = served
    r = post(server, JSON_AUTH)
    assert r.status == 202 and r.json()["state"] == "queued"
    assert post(server, JSON_AUTH, host="hub.local:8710").status == 202  # mam.api_allowed_hosts
    assert post(server, {**JSON_AUTH, "Origin": f"http://127.0.0.1:{server.port}"}).status == 202  # own origin
    assert count(factory) == 3


@pytest.mark.parametrize("case, headers, host, status", [
    ("no token", {"Content-Type": "application/json"}, None, 401),
    ("wrong token", {"Content-Type": "application/json", "Authorization": "Bearer " + "x" * 26}, None, 401),
    ("token of another scheme", {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"}, None, 401),
    ("foreign host", JSON_AUTH, "evil.example", 403),
    ("foreign host with our port", JSON_AUTH, "evil.example:{port}", 403),
    ("cross-origin text/plain", {**AUTH, "Content-Type": "text/plain", "Origin": "http://evil.example"}, None, 403),
    ("cross-origin text/plain without token", {"Content-Type": "text/plain", "Origin": "http://evil.example"},
     None, 403),
    ("text/plain", {**AUTH, "Content-Type": "text/plain"}, None, 415),
    ("form post", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, None, 415),
    ("no content type", AUTH, None, 415),
])
def test_the_edge_refuses_and_enqueues_nothing(served, caplog: pytest.LogCaptureFixture, case: str,
                                               headers: dict[str, str], host: str | None, status: int) -> None:
    factory, server = served
    r = post(server, headers, host=host.format(port=server.port) if host else None)
    assert r.status == status, (case, r.body)
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert count(factory) == 0
    assert TOKEN not in caplog.text
    assert_no_traceback(caplog.records)


def test_a_token_refusal_says_where_the_token_is(served, tmp_path: Path) -> None:
    _, server = served
    r = post(server, {"Content-Type": "application/json"})
    assert str(tmp_path / "secrets" / "mam-api.token") in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_reads_need_no_token_but_a_local_host(served) -> None:
    _, server = served
    ok = send_raw(server.url, http_request("GET", "/channels", f"localhost:{server.port}"))
    assert ok.status == 200 and ok.json()[0]["name"] == "readings"
    evil = send_raw(server.url, http_request("GET", "/channels", "evil.example"))
    assert evil.status == 403 and "mam.api_allowed_hosts" in evil.json()["error"]
    cross = send_raw(server.url, http_request("GET", "/channels", f"127.0.0.1:{server.port}",
                                              {"Origin": "http://evil.example"}))
    assert cross.status == 403


@pytest.mark.parametrize("name", list(malformed_requests("/messages", "127.0.0.1")))
def test_malformed_http_is_a_json_400_and_the_api_carries_on(served, caplog: pytest.LogCaptureFixture,
                                                             name: str) -> None:
    factory, server = served
    raw = malformed_requests("/messages", f"127.0.0.1:{server.port}", JSON_AUTH)[name]
    r = send_raw(server.url, raw)
    assert r.status == 400 and r.json()["error"], (name, r.body)
    assert count(factory) == 0
    assert_no_traceback(caplog.records)
    assert post(server, JSON_AUTH).status == 202  # the next request is served
    assert count(factory) == 1


def test_api_token_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "mam-api.token"
    first = api_token(path)
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert api_token(path) == first  # the same on the next start
    assert api_token(tmp_path / "other.token") != first


def test_api_token_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "mam-api.token"
    write_secret_file(path, "a-long-enough-token-value")
    os.chmod(path, 0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        api_token(path)


@pytest.mark.parametrize("text", ["short", "has a space in it somewhere", "tøken-with-non-ascii-characters"])
def test_api_token_refuses_a_weak_or_odd_token(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mam-api.token"
    path.write_bytes(text.encode())
    os.chmod(path, 0o600)
    with pytest.raises(SecretFileError):
        api_token(path)


def test_token_file_setting(tmp_path: Path) -> None:
    assert mam_settings(hub_config(tmp_path)).api_token_file == tmp_path / "secrets" / "mam-api.token"
    own = mam_settings(hub_config(tmp_path, api_token_file=str(tmp_path / "t")))
    assert own.api_token_file == tmp_path / "t"


def test_a_channel_blocked_by_a_refusal_says_so(tmp_path: Path) -> None:
    from tests.mam_client.fakes import RefusingTangle

    config = hub_config(tmp_path)
    engine = make_engine(config.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    node = RefusingTangle()
    node.refuse = "invalid transaction"
    publisher = Publisher(factory, mam_settings(config), node)
    publisher.ensure_channels()

    async def post_and_read(client: TestClient) -> Any:
        posted = await (await client.post("/messages", json={"channel": "readings", "trytes": "HELLO"})).json()
        publisher.run_once()
        one = await (await client.get(f"/messages/{posted['id']}")).json()
        return posted, one, await (await client.get("/channels")).json()

    posted, one, channels = run(factory, post_and_read)
    assert one["state"] == "prepared" and "invalid transaction" in one["refusal"] and one["retryAt"]
    blocked = channels[0]["blockedBy"]
    assert blocked["message_id"] == posted["id"] and "invalid transaction" in blocked["reason"]
    node.refuse = None
    with factory() as session:  # the slow schedule: make the retry due now instead of waiting a minute
        session.get(OutboxMessage, posted["id"]).retry_at = None
        session.commit()
    publisher.run_once()
    channels = run(factory, lambda client: _json(client, "/channels"))
    assert channels[0]["blockedBy"] is None and channels[0]["attached"] == 1


async def _json(client: TestClient, path: str) -> Any:
    return await (await client.get(path)).json()
