"""Raw-socket HTTP for edge tests: bytes a real client library would refuse to send (bad framing, lying headers).

Also the malformed requests every SCB server is tested with, and the check that a log holds no traceback.
"""
from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.headers, self.body[:200])
        return json.loads(self.body)


def _read_response(sock: socket.socket) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer (got {data[:200]!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of its answer"
        body += chunk
    return RawResponse(status, headers, body[:length])


def send_raw(url: str, request: bytes) -> RawResponse:
    """Send `request` as is on a new connection to `url`'s host and port; the server's (first) answer.

    The socket timeout is a guard against a server that never answers, not a budget: answers take milliseconds.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall(request)
        return _read_response(sock)


def http_request(method: str, path: str, host: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> bytes:
    """A well-formed HTTP/1.1 request (Content-Length from the body unless given)."""
    fields = {"Host": host, "Connection": "close", **(headers or {})}
    if body and "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


#: the malformed requests whose framing is fine but whose body cannot be decoded (a server that never reads the
#: body of that request answers it normally)
BODY_CASES = ("gzip over a plain body", "deflate over a plain body")


def malformed_requests(path: str, host: str, headers: dict[str, str] | None = None,
                       method: str = "POST") -> dict[str, bytes]:
    """Requests aiohttp's parser refuses (or whose body it cannot decode), each with the `headers` the server
    would otherwise need (so a refusal is about the framing, not a missing header)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    start = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}".encode("latin-1")
    body = b'{"command": "getNodeInfo"}'
    return {
        "negative content-length": start + b"Content-Length: -5\r\n\r\n",
        "bad chunk size": start + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
        "header line too long": start + b"X-Long: " + b"a" * 10_000 + b"\r\n\r\n",
        "request line too long": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
        "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        "gzip over a plain body": start + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        "two content-lengths": start + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "deflate over a plain body": start + b"Content-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body,
    }


def assert_no_traceback(records: list[logging.LogRecord]) -> None:
    """Nothing logged with a traceback (and no message that embeds one)."""
    for record in records:
        assert record.exc_info is None and not record.exc_text, f"traceback logged: {record.getMessage()}"
        assert "Traceback" not in record.getMessage(), record.getMessage()
