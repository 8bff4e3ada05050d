"""`scb fleet-upload`: the hub's upload to its fleet server (a process of `scb run` when `[fleet] url` is set)."""
from __future__ import annotations

import argparse

from scb.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    upload = sub.add_parser("fleet-upload", help="upload this hub's data to its fleet server ([fleet] url)",
                            description="Runs until SIGTERM; retries while the fleet is unreachable (docs/fleet.md).")
    upload.set_defaults(handler=cmd_upload)


def cmd_upload(args: argparse.Namespace) -> int:
    from hub.fleet.upload import run

    return run(load_config(args.config))
