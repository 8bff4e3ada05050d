"""The JSON-RPC transport of the chain client: `ChainClient`'s seam for every request (eth_call, eth_getLogs,
eth_estimateGas, eth_sendRawTransaction, receipts ...).

Why a seam of our own: every view, event and transaction of SolarProperty is a plain JSON-RPC request whose
answer this SCB decodes itself (settlement.abi; transactions are signed by settlement.signing), so none needs web3
(whose import costs `scb verify` more than its whole one-second budget and each process about 50 MB, issue 16).

Two transports, one interface (`request`, `batch`):
* `JsonRpcTransport`: HTTP with the standard library (scb.jsonhttp), the default;
* `ProviderTransport`: a web3 provider's `make_request`/`make_batch_request` (the tests' fake node, or a provider a
  caller passes to `ChainClient(provider=...)`), so that the layers above run offline exactly as against a node.

What a transport raises: the node could not be reached, timed out, or failed on its side (HTTP 5xx, an answer that
is not JSON-RPC) -> `ChainUnavailable`; HTTP 429 or a JSON-RPC "limit exceeded" -> `RateLimited` (a
ChainUnavailable); a JSON-RPC error answer -> `RpcError` (a `ChainRefused`: the node understood and said no), with
the error's code, message and data (a revert's data is decoded by ChainClient, which knows the ABI).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

from scb.errors import ChainRefused, ChainUnavailable
from scb.jsonhttp import post_json
from settlement.logscan import is_range_refusal

#: how providers say "too many requests" in a JSON-RPC error (lower case); a range refusal is told apart first
_RATE_WORDS = ("limit exceeded", "rate limit", "too many requests", "request limit", "exceeded the quota",
               "capacity exceeded", "throughput")
#: the JSON-RPC request of a batch: (method, params)
Call = tuple[str, Sequence[Any]]


class RateLimited(ChainUnavailable):
    """The provider answered HTTP 429 or a JSON-RPC "limit exceeded": retried with back-off by the client."""


class RpcError(ChainRefused):
    """A JSON-RPC error answer: `code`, `rpc_message` and `data` as the node gave them."""

    def __init__(self, what: str, code: Any, message: str, data: Any = None) -> None:
        super().__init__(f"{what}: {message}")
        self.code = code
        self.rpc_message = message
        self.data = data

    def revert_data(self) -> bytes | None:
        """The revert data in `data` (geth and anvil: a 0x string, some providers: {"data": "0x..."})."""
        data = self.data.get("data") if isinstance(self.data, dict) else self.data
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                return None
        return None


def is_rate_limit(message: str) -> bool:
    text = message.lower()
    return any(word in text for word in _RATE_WORDS) and not is_range_refusal(text)


def error_of(what: str, error: Any) -> RpcError:
    """The RpcError of a JSON-RPC `error` member."""
    if isinstance(error, dict):
        return RpcError(what, error.get("code"), str(error.get("message", error)), error.get("data"))
    return RpcError(what, None, str(error))


def result_of(what: str, answer: Any, node: str) -> Any:
    """The `result` of one JSON-RPC answer object; its error as RpcError (RateLimited for a rate limit)."""
    if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
        raise ChainUnavailable(f"Ethereum node {node} answered {what} with something that is not JSON-RPC")
    if answer.get("error") is not None:
        error = error_of(what, answer["error"])
        if is_rate_limit(error.rpc_message):
            raise RateLimited(f"Ethereum node {node} rate-limits {what}: {error.rpc_message}")
        raise error
    return answer.get("result")


class Transport(Protocol):
    """What ChainClient sends every request through. `request`: one call's result. `batch`: the node's answer to a
    JSON-RPC batch as it came (a list of answer objects, or one error object for the whole batch), or None when the
    endpoint takes no batch at all (HTTP 4xx other than 429, or a provider without batches)."""

    def request(self, method: str, params: Sequence[Any]) -> Any: ...

    def batch(self, calls: Sequence[Call]) -> Any: ...


class JsonRpcTransport:
    """JSON-RPC over HTTP (POST, one connection per request: a verify asks a handful of questions)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)

    def _post(self, payload: Any, what: str) -> Any:
        answer = post_json(self.url, payload, self.timeout_s, unreachable=ChainUnavailable,
                           peer=f"Ethereum node {self.url} ({what})")
        if answer.status == 429:
            raise RateLimited(f"Ethereum node {self.url} rate-limits {what} (HTTP 429)")
        if answer.status >= 500:
            raise ChainUnavailable(f"Ethereum node {self.url} failed on {what} (HTTP {answer.status}): "
                                   f"{answer.text[:200]}")
        if answer.status >= 400:
            return _Refused(answer.status, answer.text, answer.data)
        if answer.data is None:
            raise ChainUnavailable(f"Ethereum node {self.url} answered {what} with something that is not JSON")
        return answer.data

    def request(self, method: str, params: Sequence[Any]) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)},
                            method)
        if isinstance(answer, _Refused):
            # a JSON-RPC error in a 4xx body (some providers) is the node's own answer; else the HTTP status
            if isinstance(answer.data, dict) and answer.data.get("error") is not None:
                return result_of(method, answer.data, self.url)
            raise ChainUnavailable(f"Ethereum node {self.url} refused {method} (HTTP {answer.status}): "
                                   f"{answer.text[:200]}")
        return result_of(method, answer, self.url)

    def batch(self, calls: Sequence[Call]) -> Any:
        first = next(self._ids)
        payload = [{"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
                   for i, (method, params) in enumerate(calls)]
        for _ in calls[1:]:
            next(self._ids)
        answer = self._post(payload, f"batch of {len(calls)}")
        if isinstance(answer, _Refused):
            return None
        if isinstance(answer, list):
            # JSON-RPC lets a server answer a batch in any order: put the answers back in request order
            by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
            ordered = [by_id.get(first + i) for i in range(len(calls))]
            return ordered if all(item is not None for item in ordered) else answer
        return answer


class _Refused:
    """An HTTP 4xx answer (not 429): what the endpoint says of the request itself."""

    def __init__(self, status: int, text: str, data: Any) -> None:
        self.status, self.text, self.data = status, text, data


class ProviderTransport:
    """A web3 provider as the transport (`make_request`, `make_batch_request`). Its exceptions (requests',
    web3's) are left to ChainClient.guard, which maps them as it maps web3's."""

    def __init__(self, provider: Any, node: str) -> None:
        self.provider = provider
        self.node = node

    def request(self, method: str, params: Sequence[Any]) -> Any:
        return result_of(method, self.provider.make_request(method, list(params)), self.node)

    def batch(self, calls: Sequence[Call]) -> Any:
        make_batch = getattr(self.provider, "make_batch_request", None)
        if make_batch is None:
            return None
        try:
            return make_batch([(method, list(params)) for method, params in calls])
        except NotImplementedError:
            return None
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if not isinstance(status, int) or status == 429 or status >= 500:
                raise  # unreachable, throttled or failing: guard maps it (ChainUnavailable, RateLimited)
            return None  # 400, 405, 413 ...: this endpoint takes no batch (of this size)
