"""The fleet page: one server-rendered HTML table of every hub, no scripts and no external assets (like the
dashboard, it must work on a network with no internet access). A stale hub (no heartbeat within
`[fleet] stale_after_s`) and a hub with alerts stand out: a row class, a red mark and the word, not colour alone."""
from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;
vertical-align:top}th{background:#f4f4f4}tr.stale{background:#fde8e8}tr.alerting{background:#fff6e0}
.mark{font-weight:bold;color:#b00020}.ok{color:#146c2e}code{font-size:.85em}ul{margin:0;padding-left:1rem}
"""


def _cell(value: Any) -> str:
    return "-" if value is None else escape(str(value))


def render_page(hubs: list[dict[str, Any]], stale_after_s: float) -> str:
    rows = []
    for h in hubs:
        alerts = h.get("alerts") or []
        classes = ["stale"] if h["stale"] else []
        if alerts:
            classes.append("alerting")
        state = (f'<span class="mark">STALE</span> (no heartbeat for {_cell(h["heartbeat_age_s"])} s)'
                 if h["stale"] else '<span class="ok">current</span>')
        last = h.get("last_settlement")
        settled = "-" if last is None else (f"period {escape(str(last['period_id']))} of system "
                                            f"{escape(str(last['system_id']))}<br><code>{_cell(last['tx'])}</code>")
        alert_html = "none" if not alerts else "<ul>" + "".join(
            f'<li><span class="mark">{_cell(a.get("code"))}</span>: {_cell(a.get("message"))}</li>'
            for a in alerts if isinstance(a, dict)) + "</ul>"
        rows.append(
            f'<tr class="{" ".join(classes)}" data-account="{escape(h["account"])}">'
            f'<td>{escape(h["name"])}<br><code>{escape(h["account"])}</code></td>'
            f'<td>{_cell(h["last_heartbeat"])}<br>{state}</td>'
            f'<td>{_cell(h["outbox_depth"])}</td><td>{_cell(h["upload_backlog"])}</td>'
            f'<td>{_cell(h["readings"])}</td><td>{settled}</td><td>{alert_html}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="7">No hub has uploaded yet.</td></tr>'
    stale = sum(1 for h in hubs if h["stale"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>SCB fleet</title>'
        f"<style>{STYLE}</style></head><body><h1>SCB fleet</h1>"
        f"<p>{len(hubs)} hub{'s' if len(hubs) != 1 else ''}, {stale} stale (no heartbeat for more than "
        f"{stale_after_s:.0f} s).</p>"
        "<table><thead><tr><th>hub</th><th>last heartbeat</th><th>MAM outbox (unpublished)</th>"
        "<th>upload backlog</th><th>readings here</th><th>last settlement</th><th>alerts</th></tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>")
