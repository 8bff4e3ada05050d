"""`scb dashboard`: serve the hub's dashboard (docs/dashboard.md)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from scb.config import load_config
from scb.db import safe_url
from scb.errors import ScbError

log = logging.getLogger("dashboard")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dashboard", help="serve the dashboard: live chart, MAM messages with verification, "
                                         "settlements, holders' standing (read-only; 127.0.0.1:8720 by default)")
    p.add_argument("--host", help="address to listen on (default: [dashboard] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: [dashboard] port, 8720)")
    p.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.app import create_app
    from dashboard.data import open_read_database
    from dashboard.settings import dashboard_settings
    from scb import http

    config = load_config(args.config)
    settings = dashboard_settings(config)
    if args.host:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise ScbError(f"--port must be from 1 to 65535, not {args.port}")
        settings = replace(settings, port=args.port)
    factory = open_read_database(config)
    from scb.loop import Heartbeat

    app = create_app(config, factory, settings, heartbeat=Heartbeat(config.data_dir, "dashboard"))
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info("dashboard on http://%s:%d/ (database %s)", shown, settings.port, safe_url(config.database_url))
    try:
        http.run_app(app, host=settings.host, port=settings.port)
    except OSError as exc:
        raise ScbError(f"the dashboard cannot listen on {shown}:{settings.port}: {exc.strerror or exc}") from None
    return 0
