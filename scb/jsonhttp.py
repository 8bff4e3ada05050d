"""One JSON request over HTTP with the standard library: the light client of the hub's read paths.

Why not requests (or web3's and PyOTA's clients on top of it): `scb verify` asks the chain and the tangle node a
few questions and must answer within a second (issue 16); importing requests, web3 and PyOTA cost it more than
that. The callers (settlement.rpc, mam_client.node_reader) map what this returns onto their own errors.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from scb import safejson
from scb.errors import DataError, TransportError


@dataclass(frozen=True)
class JsonAnswer:
    """An HTTP answer: its status, its body parsed as JSON (None when it is not JSON) and its text."""

    status: int
    data: Any
    text: str


def post_json(url: str, payload: Any, timeout_s: float, *, unreachable: type[TransportError], peer: str,
              headers: dict[str, str] | None = None) -> JsonAnswer:
    """POST `payload` as JSON. Any HTTP status is an answer; a failure to get one (refused, reset, timed out, a
    malformed URL) raises `unreachable` (the caller's TransportError, e.g. ChainUnavailable), naming `peer`."""
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the configured peer
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read() if exc.fp is not None else b""
    except (urllib.error.URLError, http.client.HTTPException, OSError, socket.timeout, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise unreachable(f"{peer} is unreachable: {type(reason).__name__}: {reason}") from None
    text = raw.decode("utf-8", "replace")
    try:
        data = safejson.loads(text)
    except (ValueError, DataError):
        data = None
    return JsonAnswer(status, data, text)
