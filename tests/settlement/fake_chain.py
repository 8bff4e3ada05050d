"""A fake Ethereum node for offline tests: a web3 provider that answers JSON-RPC for one SolarProperty whose views
are Python functions, ABI-encoded with the committed artifact, as a node would.

Why a provider and not a mock of the facade: the facade's whole job is the seam between web3 and the hub (the
calldata, the block a call is pinned to, the decoding by name, the mapping of reverts and dead nodes onto the
error tree); a fake at the JSON-RPC level exercises all of it, the way `tests/memory_tangle.py` does for the tangle.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3.providers.base import BaseProvider

from settlement.chain import _canonical_type
from settlement.contract_artifact import load_artifact

ADDRESS = to_checksum_address("0x" + "5f" * 20)


class Revert(Exception):
    """Raised by a view handler: the node answers with the custom error `name(args)` as revert data."""

    def __init__(self, name: str, *args: Any) -> None:
        super().__init__(name)
        self.name = name
        self.args_ = args


class FakeNode(BaseProvider):
    """`views[name](*args) -> value` answers eth_call of view `name` (the value as eth_abi encodes the outputs:
    a tuple for a struct). Every request is recorded in `requests`; eth_call's block parameter in `call_blocks`.
    `advance_per_request`: the head moves on by that many blocks after each request (a live chain)."""

    def __init__(self, chain_id: int = 31337, head: int = 100, advance_per_request: int = 0) -> None:
        super().__init__()
        self.abi = load_artifact()["abi"]
        self.functions = {keccak(text=f"{e['name']}({','.join(_canonical_type(i) for i in e['inputs'])})")[:4]: e
                          for e in self.abi if e.get("type") == "function"}
        self.errors = {e["name"]: e for e in self.abi if e.get("type") == "error"}
        self.chain_id = chain_id
        self.head = head
        self.advance = advance_per_request
        self.views: dict[str, Callable[..., Any]] = {}
        self.code = "0x6080"  # any non-empty code
        self.down = False
        self.requests: list[str] = []
        self.call_blocks: list[tuple[str, Any]] = []
        self.balance = 0
        self.gas_price = 1

    def is_connected(self, show_traceback: bool = False) -> bool:
        return not self.down

    def make_request(self, method: Any, params: Any) -> Any:
        if self.down:
            raise requests.ConnectionError("connection refused (fake node is down)")
        self.requests.append(str(method))
        try:
            return self._answer(str(method), list(params))
        finally:
            self.head += self.advance

    def _ok(self, result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "result": result}

    def _answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method == "eth_chainId":
            return self._ok(hex(self.chain_id))
        if method == "web3_clientVersion":
            return self._ok("fake/1.0")
        if method == "eth_blockNumber":
            return self._ok(hex(self.head))
        if method == "eth_getBlockByNumber":
            number = self.head if params[0] == "latest" else int(params[0], 16)
            return self._ok({"number": hex(number), "timestamp": hex(1_900_000_000 + number),
                             "hash": "0x" + number.to_bytes(32, "big").hex(), "transactions": []})
        if method == "eth_getCode":
            return self._ok(self.code)
        if method == "eth_getBalance":
            return self._ok(hex(self.balance))
        if method == "eth_gasPrice":
            return self._ok(hex(self.gas_price))
        if method == "eth_getLogs":
            return self._ok([])
        if method == "eth_call":
            return self._call(params[0], params[1])
        return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": f"method {method} not found"}}

    def _call(self, tx: dict[str, Any], block: Any) -> dict[str, Any]:
        data = bytes.fromhex(tx["data"][2:])
        entry = self.functions[data[:4]]
        types = [_canonical_type(i) for i in entry["inputs"]]
        args = [to_checksum_address(a) if t == "address" else a for t, a in zip(types, abi_decode(types, data[4:]))]
        self.call_blocks.append((entry["name"], block))
        if self.code == "0x":
            return self._ok("0x")  # what a node answers for a call to an address without code
        try:
            value = self.views[entry["name"]](*args)
        except Revert as revert:
            error = self.errors[revert.name]
            types = [_canonical_type(i) for i in error["inputs"]]
            selector = keccak(text=f"{revert.name}({','.join(types)})")[:4]
            payload = "0x" + (selector + abi_encode(types, list(revert.args_))).hex()
            return {"jsonrpc": "2.0", "id": 1,
                    "error": {"code": 3, "message": "execution reverted", "data": payload}}
        outputs = [_canonical_type(o) for o in entry["outputs"]]
        values = value if len(outputs) > 1 else (value,)
        return self._ok("0x" + abi_encode(outputs, list(values)).hex())
