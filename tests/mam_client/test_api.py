"""The MAM client's HTTP API, served by aiohttp on a real socket (aiohttp's test server)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from mam_client.api import MAX_BODY_BYTES, create_app
from mam_client.crypto.trits import trytes_to_ascii
from mam_client.models import OutboxMessage
from mam_client.publisher import Publisher
from mam_client.settings import mam_settings
from scb.config import Config
from scb.db import make_engine, make_sessionmaker, upgrade
from tests.memory_tangle import MemoryTangle


@pytest.fixture()
def setup(tmp_path: Path):
    config = Config(data={"hub": {"data_dir": str(tmp_path)}, "mam": {"channels": {"readings": {"security": 1}}}})
    engine = make_engine(config.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    publisher = Publisher(factory, mam_settings(config), MemoryTangle())
    publisher.ensure_channels()
    return factory, publisher


def run(factory, script) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(create_app(factory, ("readings",)))) as client:
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
