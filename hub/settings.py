"""Settings of the application layer: `[run]` (the supervisor of `scb run`) and `[alerts]` (`scb status`).

    [run]
    heartbeat_timeout_s = 120   # a process whose heartbeat is older than this is reported hung and restarted
    crash_loop_exits = 5        # this many exits ...
    crash_loop_window_s = 60    # ... within this many seconds mark a process failing (it keeps being retried,
    failing_retry_s = 300       #     every this many seconds)
    fork_processes = true       # start SCB's processes as forks of the supervisor, sharing their imports (hub.forking)

    [alerts]
    outbox_max_age_s = 900      # the oldest unpublished MAM message older than this, while the node answers
    settle_max_delay_s = 1800   # a closed period (its lateness window over) not settled this long after
    min_settlements_funded = 10 # the hub account cannot pay the gas of this many more settlements
    loop_error_s = 60           # a loop failing (e.g. the database locked) for longer than this
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scb.config import Config
from scb.settings import read_section

SECTIONS = ("run", "alerts")

RUN_DEFAULTS: dict[str, Any] = {
    # Why 120 s: the longest step a loop takes without beating is one node or chain call (30 s timeouts) or
    # one proof of work at the configured mwm, which takes well under a minute on a Pi at mwm 14.
    "heartbeat_timeout_s": 120.0,
    "crash_loop_exits": 5,
    "crash_loop_window_s": 60.0,
    "failing_retry_s": 300.0,
    # Why on by default: the processes share about half of their resident memory this way (docs/deployment.md);
    # off, each process starts a fresh interpreter, for a library that misbehaves after fork(2)
    "fork_processes": True,
}
ALERT_DEFAULTS: dict[str, Any] = {
    "outbox_max_age_s": 900.0,
    "settle_max_delay_s": 1800.0,
    "min_settlements_funded": 10,
    "loop_error_s": 60.0,
}


@dataclass(frozen=True)
class RunSettings:
    heartbeat_timeout_s: float
    crash_loop_exits: int
    crash_loop_window_s: float
    failing_retry_s: float
    fork_processes: bool


@dataclass(frozen=True)
class AlertSettings:
    outbox_max_age_s: float
    settle_max_delay_s: float
    min_settlements_funded: int
    loop_error_s: float


def run_settings(config: Config) -> RunSettings:
    raw = read_section(config, "run", RUN_DEFAULTS)
    return RunSettings(heartbeat_timeout_s=raw.number("heartbeat_timeout_s", 5, 86_400),
                       crash_loop_exits=raw.integer("crash_loop_exits", 2, 1000),
                       crash_loop_window_s=raw.number("crash_loop_window_s", 1, 86_400),
                       failing_retry_s=raw.number("failing_retry_s", 1, 86_400),
                       fork_processes=raw.boolean("fork_processes"))


def alert_settings(config: Config) -> AlertSettings:
    raw = read_section(config, "alerts", ALERT_DEFAULTS)
    return AlertSettings(outbox_max_age_s=raw.number("outbox_max_age_s", 1, 365 * 86_400),
                         settle_max_delay_s=raw.number("settle_max_delay_s", 1, 365 * 86_400),
                         min_settlements_funded=raw.integer("min_settlements_funded", 0, 1_000_000),
                         loop_error_s=raw.number("loop_error_s", 0, 86_400))


#: Every module that owns configuration sections (its SECTIONS); `scb` refuses any other section.
SETTINGS_MODULES = ("scb.config", "mam_client.settings", "mam_client.node.settings", "energy_manager.settings",
                    "settlement.settings", "dashboard.settings", "hub.settings", "hub.fleet.settings",
                    "home_assistant.settings")


def known_sections() -> list[str]:
    """The sections some module reads: everything else in a configuration is a mistake."""
    import importlib

    return [name for module in SETTINGS_MODULES for name in importlib.import_module(module).SECTIONS]
