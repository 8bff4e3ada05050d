"""Alerts an operator can act on, computed from a snapshot of the hub (no I/O here: `hub.status` gathers it).

Each alert says what is wrong and what to look at. `scb status` prints them (and exits 1 while any is raised,
so a cron job or a monitoring agent can act on the exit code); the dashboard shows them.

| code               | raised when                                                                   |
|--------------------|-------------------------------------------------------------------------------|
| no-readings        | no reading stored for 3 sample intervals (wall clock) while the energy manager should be sampling |
| outbox-stale       | the oldest unpublished MAM message is older than `outbox_max_age_s` while the node answers |
| node-unreachable   | the publisher could not reach the node, and messages wait                     |
| channel-blocked    | the node refused a message; its channel waits for it (the nextRoot chain cannot skip it) |
| period-unsettled   | a closed period (its lateness window over) is not settled `settle_max_delay_s` after |
| low-balance        | the hub account cannot pay the gas of `min_settlements_funded` more settlements |
| process-failing    | a process of `scb run` crash-loops                                            |
| process-hung       | a process stopped beating and was restarted                                   |
| process-stopped    | a process of `scb run` is not running                                         |
| loop-failing       | a loop has been failing (e.g. the database locked, disk full) for `loop_error_s` |
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hub.settings import AlertSettings
from scb.timefmt import utc_iso

#: Why a floor under "3 sample intervals": the demo's accelerated clock samples every wall second, and one slow
#: commit on an SD card takes longer than three of those; an alert must mean something is wrong.
MIN_READING_GAP_S = 15.0


@dataclass(frozen=True)
class Alert:
    code: str
    message: str
    since: float | None = None  # wall clock, when known

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = utc_iso(self.since) if self.since is not None else None
        return out


@dataclass
class Snapshot:
    """What the alerts look at; every time is wall-clock seconds since the epoch."""

    now: float
    # energy manager
    sampling_expected: bool = False  # the energy manager runs (or should, under scb run)
    energy_started_at: float | None = None  # since when it has been running, when known
    last_reading_at: float | None = None
    sample_wall_s: float = 60.0  # one sample interval in wall-clock seconds
    # publisher
    oldest_unpublished_at: float | None = None
    unpublished: int = 0
    node_reachable: bool | None = None
    blocked: list[dict[str, Any]] = field(default_factory=list)  # channel, message_id, reason, since
    # settlement
    oldest_unsettled_close_at: float | None = None  # wall clock the oldest unsettled closed period closed
    unsettled_period: str | None = None
    balance_wei: int | None = None
    settle_cost_wei: int | None = None  # gas of one settlement times the gas price
    # processes (rows of hub.processes.process_status)
    processes: list[dict[str, Any]] = field(default_factory=list)


def compute(s: Snapshot, settings: AlertSettings) -> list[Alert]:
    alerts: list[Alert] = []
    gap = max(3 * s.sample_wall_s, MIN_READING_GAP_S)
    if s.sampling_expected:
        last = s.last_reading_at if s.last_reading_at is not None else s.energy_started_at
        if last is not None and s.now - last > gap:
            what = "no reading stored" if s.last_reading_at is None else \
                f"no reading stored since {utc_iso(s.last_reading_at)}"
            alerts.append(Alert("no-readings", f"{what} ({s.now - last:.0f} s, more than 3 sample intervals); see "
                                "the energy manager's log and `scb readings`", last))
    for b in s.blocked:
        alerts.append(Alert("channel-blocked", f"channel {b['channel']} is blocked: the node refused message "
                            f"{b['message_id']} ({b['reason']}); later messages wait for it, retried "
                            f"{'at ' + utc_iso(b['retry_at']) if b.get('retry_at') else 'on a slow schedule'}",
                            b.get("since")))
    if s.oldest_unpublished_at is not None and s.now - s.oldest_unpublished_at > settings.outbox_max_age_s:
        age = s.now - s.oldest_unpublished_at
        if s.node_reachable is False:
            alerts.append(Alert("node-unreachable", f"{s.unpublished} MAM message(s) wait, the oldest for {age:.0f} "
                                "s: the IOTA node cannot be reached (see the mam-client's log)",
                                s.oldest_unpublished_at))
        elif not s.blocked:
            alerts.append(Alert("outbox-stale", f"the oldest of {s.unpublished} unpublished MAM message(s) is "
                                f"{age:.0f} s old (limit {settings.outbox_max_age_s:.0f} s) while the node answers; "
                                "see the mam-client's log", s.oldest_unpublished_at))
    if s.oldest_unsettled_close_at is not None and \
            s.now - s.oldest_unsettled_close_at > settings.settle_max_delay_s:
        alerts.append(Alert("period-unsettled", f"{s.unsettled_period or 'a closed period'} closed "
                            f"{s.now - s.oldest_unsettled_close_at:.0f} s ago and is not settled (limit "
                            f"{settings.settle_max_delay_s:.0f} s); see `scb status` and the settlement's log",
                            s.oldest_unsettled_close_at))
    if s.balance_wei is not None and s.settle_cost_wei and settings.min_settlements_funded:
        left = s.balance_wei // s.settle_cost_wei
        if left < settings.min_settlements_funded:
            alerts.append(Alert("low-balance", f"the hub account holds {s.balance_wei} wei: gas for {left} more "
                                f"settlement(s) (limit {settings.min_settlements_funded}); fund it"))
    for p in s.processes:
        name, state = p.get("name"), p.get("state")
        if state == "failing":
            alerts.append(Alert("process-failing", f"process {name} is failing: {p.get('note') or 'it keeps exiting'}"
                                f"; retried slowly (see {p.get('log', 'its log')})", p.get("last_exit_at")))
        elif state == "hung":
            alerts.append(Alert("process-hung", f"process {name} {p.get('note') or 'stopped beating'}; restarted"))
        elif p.get("supervised", True) and not p.get("running") and state not in ("stopped",):
            alerts.append(Alert("process-stopped", f"process {name} is not running ({p.get('note') or state})",
                                p.get("last_exit_at")))
        for loop, st in (p.get("loops") or {}).items():
            if not isinstance(st, dict) or not st.get("error"):
                continue
            since = st.get("error_since")
            if since is None or s.now - float(since) >= settings.loop_error_s:
                alerts.append(Alert("loop-failing", f"{name}: {loop} failing ({st.get('failures', 0)} tries): "
                                    f"{st['error']}", since))
    return alerts
