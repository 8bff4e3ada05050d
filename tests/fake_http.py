"""A scripted HTTP peer for the error paths of the light clients (settlement.rpc, mam_client.tangle_reader).

Why a real socket and not a mock: what is under test is how an HTTP status, a body that is not JSON or a closed
port reaches the error tree through the standard library's client; only a server shows that.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: request body (parsed JSON) -> (status, body text)
Script = Callable[[Any], tuple[int, str]]


@contextmanager
def fake_peer(script: Script) -> Iterator[str]:
    """Serve `script` on 127.0.0.1; yields the URL. Every request's parsed body is passed to `script`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            status, text = script(body)
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answer(status: int, body: Any) -> Script:
    """A peer that answers every request with `status` and `body` (JSON-encoded unless it is a str)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return lambda _request: (status, text)
