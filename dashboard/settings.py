"""Typed view of the `[dashboard]` configuration section.

Why loopback by default: the page shows every household's consumption (personal data) and needs no login; an
operator who wants it on the community's LAN sets `host` deliberately (docs/dashboard.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scb import settings as check
from scb.config import Config

#: The top-level section this module reads.
SECTIONS: tuple[str, ...] = ("dashboard",)
BUCKETS = ("window", "hour")
DASHBOARD_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8720,
    "refresh_s": 5.0,          # real seconds between the page's polls
    "chart_bucket": "window",  # "window" (one publish window per point) or "hour" (of community time)
    "chart_points": 48,        # points on the chart
    "chain_cache_s": 5.0,      # real seconds a reading of the chain is reused (many open pages, one eth_call set)
    "chain_timeout_s": 5.0,    # per JSON-RPC request from the dashboard (a page must not hang on a dead node)
    "allowed_hosts": [],       # Host names it answers to besides loopback names and `host` ("*": any)
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
    allowed_hosts: tuple[str, ...] = ()


def dashboard_settings(config: Config) -> DashboardSettings:
    """The validated `[dashboard]` section; errors name the key."""
    raw = check.read_section(config, "dashboard", DASHBOARD_DEFAULTS)
    return DashboardSettings(
        host=raw.host("host"),
        port=raw.port("port"),
        refresh_s=raw.number("refresh_s", 0.5, 3600),
        chart_bucket=raw.choice("chart_bucket", BUCKETS),
        chart_points=raw.integer("chart_points", 2, MAX_POINTS),
        chain_cache_s=raw.number("chain_cache_s", 0, 3600),
        chain_timeout_s=raw.number("chain_timeout_s", 0.1, 120),
        allowed_hosts=tuple(raw.string_list("allowed_hosts", expected="a list of host names")),
    )
