"""Times as SCB shows them: UTC, ISO 8601 to the second, with a Z (`2026-12-01T22:03:12Z`).

One formatter for every status line, page and report, so that times compare by eye across them.
"""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now, aware, in UTC: the default of every table's timestamp columns (one definition for all models)."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """`moment` with its zone: SQLite hands timestamps back without one, and SCB stores them in UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def utc_iso(seconds: float | None) -> str:
    """Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`; "-" for None."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_iso_ms(ms: int | None) -> str:
    """Milliseconds since the epoch (how readings keep time) as `utc_iso` does."""
    return "-" if ms is None else utc_iso(ms / 1000)


def utc_iso_dt(value: datetime | None) -> str | None:
    """A datetime (naive ones are UTC, as SQLite returns them) as `utc_iso` does; None stays None."""
    if value is None:
        return None
    return as_utc(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
