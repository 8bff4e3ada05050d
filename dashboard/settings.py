"""Typed view of the `[dashboard]` configuration section.

Why loopback by default: the page shows every household's consumption (personal data) and needs no login; an
operator who wants it on the community's LAN sets `host` deliberately (docs/dashboard.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scb.config import Config
from scb.errors import ConfigError

BUCKETS = ("window", "hour")
DASHBOARD_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8720,
    "refresh_s": 5.0,          # real seconds between the page's polls
    "chart_bucket": "window",  # "window" (one publish window per point) or "hour" (of community time)
    "chart_points": 48,        # points on the chart
    "chain_cache_s": 5.0,      # real seconds a reading of the chain is reused (many open pages, one eth_call set)
    "chain_timeout_s": 5.0,    # per JSON-RPC request from the dashboard (a page must not hang on a dead node)
}
MAX_POINTS = 500


@dataclass(frozen=True)
class DashboardSettings:
    host: str
    port: int
    refresh_s: float
    chart_bucket: str
    chart_points: int
    chain_cache_s: float
    chain_timeout_s: float


def _number(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"dashboard.{key} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"dashboard.{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def dashboard_settings(config: Config) -> DashboardSettings:
    """The validated `[dashboard]` section; errors name the key."""
    raw = config.section("dashboard", DASHBOARD_DEFAULTS)
    host = raw["host"]
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"dashboard.host must be a host name or address to listen on, not {host!r}")
    bucket = raw["chart_bucket"]
    if bucket not in BUCKETS:
        raise ConfigError(f"dashboard.chart_bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    return DashboardSettings(
        host=host.strip(), port=_integer("port", raw["port"], 1, 65535),
        refresh_s=_number("refresh_s", raw["refresh_s"], 0.5, 3600),
        chart_bucket=bucket, chart_points=_integer("chart_points", raw["chart_points"], 2, MAX_POINTS),
        chain_cache_s=_number("chain_cache_s", raw["chain_cache_s"], 0, 3600),
        chain_timeout_s=_number("chain_timeout_s", raw["chain_timeout_s"], 0.1, 120))
