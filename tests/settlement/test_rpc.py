"""settlement.rpc, the chain's read transport: against anvil (the reference node) and against a scripted HTTP peer
for every way an answer maps onto the error tree (TransportError: retry; Refused: the node said no)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from scb.errors import ChainRefused, ChainUnavailable, TransportError
from settlement.chain import ChainClient, ContractReverted
from settlement.logscan import RangeRefused
from settlement.rpc import JsonRpcTransport, RateLimited, RpcError
from settlement.settings import ethereum_settings
from scb.config import Config
from tests.conftest import free_port
from tests.fake_http import answer, fake_peer
from tests.settlement.conftest import Anvil
from tests.web3_reference import web3_of

REVERT = "0x08c379a0" + (32).to_bytes(32, "big").hex() + (4).to_bytes(32, "big").hex() + b"nope".hex().ljust(64, "0")


def transport(url: str) -> JsonRpcTransport:
    return JsonRpcTransport(url, timeout_s=5)


def test_requests_and_batches_on_anvil(anvil: Anvil) -> None:
    rpc = transport(anvil.url)
    assert rpc.request("eth_chainId", []) == "0x7a69"
    answers = rpc.batch([("eth_chainId", []), ("eth_blockNumber", []), ("eth_getCode", ["0x" + "00" * 20, "latest"])])
    assert [a["result"] for a in answers] == ["0x7a69", "0x0", "0x"]
    with pytest.raises(RpcError) as caught:
        rpc.request("no_suchMethod", [])
    assert isinstance(caught.value, ChainRefused) and not isinstance(caught.value, TransportError)
    assert caught.value.code == -32601


def test_the_client_reads_through_it_as_web3_reads(anvil: Anvil) -> None:
    client = ChainClient(ethereum_settings(Config(data={})), rpc_url=anvil.url)
    assert isinstance(client.transport, JsonRpcTransport)
    w3 = web3_of(client)
    assert (client.chain_id, client.block_number()) == (w3.eth.chain_id, w3.eth.block_number)
    assert client.get_code("0x" + "11" * 20) == b""
    assert client.rpc("eth_getTransactionReceipt", ["0x" + "00" * 32]) is None


@pytest.mark.parametrize("status,body,error,words", [
    (500, {"error": "boom"}, ChainUnavailable, "HTTP 500"),
    (502, "<html>bad gateway</html>", ChainUnavailable, "HTTP 502"),
    (429, "slow down", RateLimited, "HTTP 429"),
    (200, "not json", ChainUnavailable, "not JSON"),
    (200, {"jsonrpc": "2.0", "id": 1}, ChainUnavailable, "not JSON-RPC"),
    (200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "daily request limit exceeded"}},
     RateLimited, "limit exceeded"),
    (403, "forbidden", ChainUnavailable, "HTTP 403"),
])
def test_http_answers_map_onto_the_tree(status: int, body: Any, error: type[Exception], words: str) -> None:
    with fake_peer(answer(status, body)) as url, pytest.raises(error) as caught:
        transport(url).request("eth_blockNumber", [])
    assert words in str(caught.value)


def test_a_json_rpc_error_is_the_nodes_refusal_with_its_data() -> None:
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "execution reverted: nope", "data": REVERT}}
    with fake_peer(answer(200, error)) as url:
        with pytest.raises(RpcError) as caught:
            transport(url).request("eth_call", [{}, "latest"])
        assert isinstance(caught.value, ChainRefused) and caught.value.code == 3
        assert caught.value.revert_data() == bytes.fromhex(REVERT[2:])
        # the client decodes the revert with the ABI: Error(string)
        client = ChainClient(ethereum_settings(Config(data={})), rpc_url=url)
        with pytest.raises(ContractReverted) as reverted:
            client.eth_call("periodInfo", {"to": "0x" + "11" * 20, "data": "0x"})
        assert (reverted.value.name, reverted.value.args_) == ("Error", ("nope",))


def test_a_refused_log_range_and_an_unreachable_node_through_the_client() -> None:
    refusal = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "query exceeds max block range 1000"}}
    settings = ethereum_settings(Config(data={}))
    with fake_peer(answer(200, refusal)) as url, pytest.raises(RangeRefused):
        ChainClient(settings, rpc_url=url).rpc("eth_getLogs", [{}], "eth_getLogs PeriodSettled")
    down = ChainClient(settings, rpc_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ChainUnavailable) as caught:
        down.block_number()
    assert "unreachable" in str(caught.value)


def test_batches_are_put_back_in_order_and_a_refusal_is_none() -> None:
    def reversed_answers(body: Any) -> tuple[int, str]:
        return 200, json.dumps([{"jsonrpc": "2.0", "id": r["id"], "result": hex(r["id"])} for r in reversed(body)])

    with fake_peer(reversed_answers) as url:
        rpc = transport(url)
        first = rpc.batch([("eth_chainId", []), ("eth_chainId", []), ("eth_chainId", [])])
        assert [int(a["result"], 16) for a in first] == [a["id"] for a in first]
        assert [a["id"] for a in first] == sorted(a["id"] for a in first)
    with fake_peer(answer(413, "payload too large")) as url:
        assert transport(url).batch([("eth_chainId", [])]) is None
    with fake_peer(answer(503, "unavailable")) as url, pytest.raises(ChainUnavailable):
        transport(url).batch([("eth_chainId", [])])
