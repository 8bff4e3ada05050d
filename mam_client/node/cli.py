"""`scb tangle-node`: run the local IOTA dev node (the hub's embedded default when no external node is set)."""
from __future__ import annotations

import argparse
from pathlib import Path

from scb.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "tangle-node",
        help="run the local IOTA dev node (legacy IRI HTTP API, own SQLite file)",
        description="Run a single-node legacy IOTA tangle speaking the IRI HTTP API (docs/tangle-node.md). "
        "Settings come from [tangle_node] in the configuration; the flags override them.",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 14265)")
    parser.add_argument("--mwm", type=int, help="minimum weight magnitude (default 9)")
    parser.add_argument("--db", type=Path, help="SQLite file (default <data_dir>/tangle.sqlite3)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Load settings (config file, environment, flags) and serve until interrupted."""
    from dataclasses import replace

    from mam_client.node.server import run
    from mam_client.node.settings import NodeSettings

    config = load_config(args.config)
    settings = NodeSettings.from_config(config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("mwm", args.mwm), ("db", args.db))
                 if v is not None}
    if overrides:
        settings = replace(settings, **overrides)
    run(settings, data_dir=config.data_dir)
    return 0
