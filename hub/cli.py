"""The `scb` command.

Each component contributes its subcommands through a `register(subparsers)` function in its own `cli` module,
and the application layer adds the commands that span components (`hub.commands`, `hub.db_commands`,
`hub.supervisor`). This module wires them together (importing only the modules of the command typed, see
`COMMANDS`), refuses configuration sections that no component owns, and
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


#: command -> the modules that register it (the command's own first). Why a table: `scb verify` must answer within
#: a second (issue 16), and importing every component's CLI (web3, aiohttp, alembic, pymodbus ...) cost 1.8 s of
#: it; with the table, `main` imports only the modules of the command typed. `--help`, no command or an unknown
#: one still build the whole parser from COMMAND_MODULES. tests/hub/test_cli.py checks the table against what
#: each module registers.
COMMANDS: dict[str, tuple[str, ...]] = {
    "mam": ("mam_client.cli",),
    "mam-client": ("mam_client.cli",),
    "tangle-node": ("mam_client.node.cli", "hub.tangle_pruning"),
    "energy-manager": ("energy_manager.cli",),
    "readings": ("energy_manager.cli",),
    "meters": ("energy_manager.cli",),
    "settlement": ("settlement.cli",),
    "settle": ("settlement.cli",),
    "chain": ("settlement.cli",),
    "demo-households": ("settlement.households",),
    "dashboard": ("dashboard.cli",),
    "home-assistant": ("home_assistant.bridge",),
    "verify": ("hub.commands",),
    "proof": ("hub.commands",),
    "status": ("hub.commands",),
    "export": ("hub.export",),
    "db": ("hub.db_commands",),
    "run": ("hub.supervisor",),
    "fleet-upload": ("hub.fleet.cli",),
    "fleet": ("fleet.cli",),
}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The `scb` parser with the commands of `modules` (default: every command, as --help shows them)."""
    parser = argparse.ArgumentParser(
        prog="scb",
        description="Smart Community Brain: the hub of a community-owned solar microgrid.",
        epilog="Configuration: --config FILE, $SCB_CONFIG or ./scb.toml, plus SCB_<SECTION>__<KEY> variables "
        "(docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"scb {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default: $SCB_CONFIG or ./scb.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and not name.startswith(f"{exc.name}."):
                raise
            continue  # component not built yet (or not in this installation: run ./start_scb.sh setup)
        module.register(sub)
    return parser


def command_modules(argv: Sequence[str]) -> Sequence[str]:
    """The modules needed to parse `argv`: those of its command when it names one in COMMANDS, else all of them
    (top-level --help or --version, no command, an unknown option or command: the whole parser answers)."""
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config":
            i += 2
            continue
        if arg.startswith("--config="):
            i += 1
            continue
        if arg.startswith("-"):
            return COMMAND_MODULES
        found = COMMANDS.get(arg)
        return found if found is not None else COMMAND_MODULES
    return COMMAND_MODULES


def set_log_level(level: str) -> None:
    """Every process's log level: `[hub] log_level`, or `SCB_LOG_LEVEL` for one command (debugging)."""
    logging.getLogger().setLevel(level.upper())
    # APScheduler logs two INFO lines per job run ("Running job", "executed successfully"): settlement's 5 s check
    # and heartbeat made ~10 MB of log a real day with nothing in it, on an SD card, unrotated
    # (benchmarks/month.py). Its warnings (a run missed or failed) still show; DEBUG shows everything.
    logging.getLogger("apscheduler.executors").setLevel(
        logging.NOTSET if level.upper() == "DEBUG" else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_modules(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    override = os.environ.get("SCB_LOG_LEVEL")
    set_log_level(override or "INFO")  # until the configuration is read
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        from hub.settings import known_sections
        from scb.config import load_config

        config = load_config(args.config)
        config.check_sections(known_sections())  # a misspelt [section] is an error, not ignored
        set_log_level(override or config.hub["log_level"])
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
