"""mam_client.tangle_reader (no PyOTA) against the project's tangle node, with PyotaTransport as the reference,
and against a scripted HTTP peer for the ways a node's answer maps onto the error tree."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mam_client.fetch import fetch_chain
from mam_client.node.server import RunningNode, serve_in_thread
from mam_client.node.settings import NodeSettings
from mam_client.tangle_reader import TangleReader
from mam_client.transport import PyotaTransport
from scb.errors import NodeRefused, NodeUnavailable
from tests.conftest import free_port
from tests.fake_http import answer, fake_peer

ADDRESS = "SCBREADER" * 9


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[RunningNode]:
    with serve_in_thread(NodeSettings(db=tmp_path / "tangle.sqlite3", port=0, mwm=1, pow_threads=1)) as running:
        yield running


def test_bundles_read_as_pyota_reads_them(node: RunningNode) -> None:
    writer = PyotaTransport(node.url, mwm=1)
    short = writer.attach(ADDRESS, "HELLO", "SCB")
    long = writer.attach(ADDRESS, "LONG" * 1500, "SCB")  # 6000 trytes: a bundle of three transactions
    got = sorted(TangleReader(node.url).find_bundles(ADDRESS), key=lambda b: b.bundle_hash)
    assert got == sorted(writer.find_bundles(ADDRESS), key=lambda b: b.bundle_hash)
    assert sorted(b.bundle_hash for b in got) == sorted([short.bundle_hash, long.bundle_hash])
    assert {len(b.tx_hashes) for b in got} == {1, 3}
    assert TangleReader(node.url).find_bundles("9" * 81) == []


def test_a_channel_fetched_through_it(node: RunningNode) -> None:
    from mam_client.mam import create_channel, create_message

    channel = create_channel("A" * 81, "public", security=1)
    writer = PyotaTransport(node.url, mwm=1)
    roots = []
    for text in ("ONE", "TWO"):
        message = create_message(channel, text)  # advances the channel
        writer.attach(message.address, message.payload, "SCB")
        roots.append(message.root)
    read = [m.message for m in fetch_chain(TangleReader(node.url), roots[0], "public", None)]
    assert read == [m.message for m in fetch_chain(writer, roots[0], "public", None)]
    assert [m[:3] for m in read] == ["ONE", "TWO"]


@pytest.mark.parametrize("status,body,error,words", [
    (400, {"error": "COMMAND findTransactions is not available on this node"}, NodeRefused,
     "refused (HTTP 400): COMMAND findTransactions is not available"),
    (500, {"exception": "database is locked"}, NodeUnavailable, "failed (HTTP 500): database is locked"),
    (429, "slow down", NodeUnavailable, "HTTP 429"),
    (200, "not json", NodeUnavailable, "malformed answer"),
    (200, {"hashes": ["junk"]}, NodeUnavailable, "malformed answer (hashes)"),
])
def test_node_answers_map_onto_the_tree(status: int, body: Any, error: type[Exception], words: str) -> None:
    with fake_peer(answer(status, body)) as url, pytest.raises(error) as caught:
        TangleReader(url).find_bundles(ADDRESS)
    assert words in str(caught.value)


def test_an_unreachable_node_and_malformed_trytes_are_unavailable() -> None:
    with pytest.raises(NodeUnavailable):
        TangleReader(f"http://127.0.0.1:{free_port()}", timeout_s=2).find_bundles(ADDRESS)

    def script(body: Any) -> tuple[int, str]:
        import json

        if body["command"] == "findTransactions":
            return 200, json.dumps({"hashes": ["A" * 81]})
        return 200, json.dumps({"trytes": ["NOTATRANSACTION"]})

    with fake_peer(script) as url, pytest.raises(NodeUnavailable) as caught:
        TangleReader(url).find_bundles(ADDRESS)
    assert "getTrytes failed: malformed answer" in str(caught.value)
