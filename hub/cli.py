"""The `scb` command.

Each component contributes its subcommands through a `register(subparsers)` function in its own `cli` module,
and the application layer adds the commands that span components (`hub.commands`, `hub.db_commands`,
`hub.supervisor`). This module wires them together, refuses configuration sections that no component owns, and
turns errors into one-line messages and exit codes (a user never sees a traceback; `SCB_DEBUG=1` shows one for
bug reports).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from scb import __version__
from scb.errors import ScbError

#: Modules with a `register(subparsers)` function, in the order their commands appear in --help.
COMMAND_MODULES = (
    "mam_client.cli",
    "mam_client.node.cli",
    "energy_manager.cli",
    "settlement.cli",
    "settlement.households",
    "dashboard.cli",
    "home_assistant.bridge",
    "hub.commands",
    "hub.export",
    "hub.db_commands",
    "hub.supervisor",
    "hub.fleet.cli",
    "hub.tangle_pruning",  # no command: the fleet's hold on the tangle node's pruning (after mam_client.node.cli)
    "fleet.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scb",
        description="Smart Community Brain: the hub of a community-owned solar microgrid.",
        epilog="Configuration: --config FILE, $SCB_CONFIG or ./scb.toml, plus SCB_<SECTION>__<KEY> variables "
        "(docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"scb {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default: $SCB_CONFIG or ./scb.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and not name.startswith(f"{exc.name}."):
                raise
            continue  # component not built yet (or not in this installation: run ./start_scb.sh setup)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SCB_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        from hub.settings import known_sections
        from scb.config import load_config

        load_config(args.config).check_sections(known_sections())  # a misspelt [section] is an error, not ignored
        return int(handler(args) or 0)
    except ScbError as exc:
        print(f"scb: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        from scb.loop import as_database_error, is_transient

        if is_transient(exc) and not isinstance(exc, OSError):  # the database locked, full or failing at start
            error = as_database_error(exc)
            print(f"scb: {error}", file=sys.stderr)
            return error.exit_code
        if os.environ.get("SCB_DEBUG"):
            traceback.print_exc()
        else:
            print(f"scb: internal error: {type(exc).__name__}: {exc} (set SCB_DEBUG=1 for details)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
