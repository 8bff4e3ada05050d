"""The fleet server's HTTP API as the hub and `scb verify --fleet` use it (requests; docs/fleet.md "API")."""
from __future__ import annotations

from typing import Any

import requests

from scb import safejson
from scb.errors import Refused, TransportError

#: Longest reason of a refusal kept (logs, heartbeats, the cursor table). Why: a proxy's HTML error page must not
#: fill them.
MAX_REASON = 300


class FleetUnavailable(TransportError):
    """The fleet server could not be reached, timed out, or failed on its side (5xx): retried with backoff."""


class FleetRefused(Refused):
    """The fleet server understood and refused (4xx: this hub's account is not allowed, a malformed batch)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _reason(response: requests.Response) -> str:
    try:
        body = safejson.loads(response.content)
        text = body.get("error") if isinstance(body, dict) else None
    except (ValueError, RecursionError):
        text = None
    text = text or response.text.strip() or response.reason or ""
    return " ".join(str(text).split())[:MAX_REASON]


class FleetClient:
    """One fleet server (`base` is its URL, e.g. http://fleet.example:8730)."""

    def __init__(self, base: str, timeout_s: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()

    @property
    def permanode_url(self) -> str:
        """The fleet's read-only legacy IRI API (a permanode over every hub's bundles)."""
        return f"{self.base}/iota"

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout_s, **kw)
        except requests.RequestException as exc:
            raise FleetUnavailable(f"fleet {self.base} cannot be reached: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise FleetUnavailable(f"fleet {self.base} failed (HTTP {response.status_code}): {_reason(response)}")
        return response

    def upload(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Send one signed batch; the fleet's receipt (what it stored). Raises FleetRefused on a 4xx."""
        response = self._request("POST", "/api/v1/upload", json=envelope)
        if response.status_code != 200:
            raise FleetRefused(f"fleet {self.base} refused the upload (HTTP {response.status_code}): "
                               f"{_reason(response)}", response.status_code)
        return dict(response.json())

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any | None:
        """GET a JSON resource of the fleet's API; None for a 404."""
        response = self._request("GET", path, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise FleetRefused(f"fleet {self.base} refused GET {path} (HTTP {response.status_code}): "
                               f"{_reason(response)}", response.status_code)
        try:
            return safejson.loads(response.content)
        except (ValueError, RecursionError):
            raise FleetUnavailable(f"fleet {self.base} answered GET {path} with something that is not JSON") \
                from None
