"""`scb tangle-node`: run the local IOTA dev node (the hub's embedded default when no external node is set)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scb.config import Config, load_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from mam_client.node.prune import Hold, HubReader, Pruner
    from mam_client.node.settings import NodeSettings
    from mam_client.node.store import Store

log = logging.getLogger("mam_client.node")


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
    # the application layer's holds (hub.tangle_pruning), when the `scb` command table supplies them
    holds_of = getattr(args, "prune_holds", None)
    run(settings, data_dir=config.data_dir,
        make_pruner=pruner_factory(config, settings, holds_of(config) if holds_of is not None else ()))
    return 0


def pruner_factory(config: Config, settings: "NodeSettings",
                   holds: Sequence["Hold"] = ()) -> "Callable[[Store], Pruner] | None":
    """How this node prunes (mam_client.node.prune), or None when `prune_after_s = 0`.

    `holds` come from the application layer (hub.tangle_pruning, through the parser default `prune_holds`). While
    `[fleet] url` is set and no hold is given, nothing is pruned: the fleet upload may still need the node's
    copy, and only hub.fleet knows how far it got. The url is read raw here (a component must not import the
    application layer's settings); only whether it is set matters.
    """
    from mam_client.node.prune import Pruner, SqliteMessages

    if settings.prune_after_s <= 0:
        return None
    held_back = bool(str(config.table("fleet").get("url") or "").strip()) and not holds
    if held_back:
        log.warning("[fleet] url is set and no fleet hold was given: the tangle node prunes nothing")

    def open_hub() -> "HubReader | None":
        from scb.sqlite_reader import sqlite_path

        path = sqlite_path(config.database_url)
        if path is not None and not holds:  # plain sqlite3: no SQLAlchemy in the node (mam_client.node.prune)
            return SqliteMessages(path, config.sqlite_busy_timeout_ms) if path.exists() else None
        from scb.db import database_exists, make_engine, make_sessionmaker

        if not database_exists(config):
            return None
        return make_sessionmaker(make_engine(config.database_url, config.sqlite_synchronous,
                                             config.sqlite_busy_timeout_ms, read_only=True))

    def make(store: "Store") -> Pruner:
        return Pruner(store=store, hub=open_hub, prune_after_s=settings.prune_after_s, holds=tuple(holds),
                      held_back=held_back)

    return make
