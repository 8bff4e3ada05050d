"""The `scb` command: a database that cannot be used at start is one line, not an internal error."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scb.config import Config
from scb.db import open_database

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["energy-manager", "mam-client", "settlement", "dashboard", "status"])
def test_a_locked_database_at_start_is_one_line(tmp_path: Path, command: str) -> None:
    open_database(Config(data={"hub": {"data_dir": str(tmp_path)}}))  # a hub database exists
    lock = sqlite3.connect(tmp_path / "scb.sqlite3", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the lock far beyond the busy timeout
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
        env.update({"SCB_DATA_DIR": str(tmp_path), "SCB_DATABASE__BUSY_TIMEOUT_S": "0.2"})
        proc = subprocess.run([sys.executable, "-m", "hub.cli", command], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    finally:
        lock.rollback()
        lock.close()
    assert proc.returncode == 2, proc.stderr
    assert "database is locked" in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------------------- the lazy command table

def _registered_by_module() -> dict[str, str]:
    """command -> the module whose register() added it, by registering each module into a fresh parser."""
    import argparse
    import importlib

    from hub.cli import COMMAND_MODULES

    parser = argparse.ArgumentParser(prog="scb")
    sub = parser.add_subparsers(dest="command")
    owner: dict[str, str] = {}
    for name in COMMAND_MODULES:
        before = set(sub.choices)
        importlib.import_module(name).register(sub)
        owner.update({command: name for command in set(sub.choices) - before})
    return owner


def test_the_command_table_names_the_module_of_every_command() -> None:
    from hub.cli import COMMANDS

    owner = _registered_by_module()
    assert set(owner) == set(COMMANDS), "hub.cli.COMMANDS must list every command exactly"
    for command, modules in COMMANDS.items():
        assert modules[0] == owner[command], command
    assert "hub.tangle_pruning" in COMMANDS["tangle-node"]  # it adds the pruning holds to tangle-node's defaults


def test_a_command_parsed_alone_has_the_same_help_as_in_the_whole_parser() -> None:
    from hub.cli import COMMANDS, build_parser

    whole = build_parser()
    whole_sub = next(a for a in whole._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for command, modules in COMMANDS.items():
        alone = build_parser(modules)
        alone_sub = next(a for a in alone._actions if a.dest == "command").choices  # type: ignore[attr-defined]
        assert alone_sub[command].format_help() == whole_sub[command].format_help(), command


@pytest.mark.parametrize("argv, lazy", [
    (["verify", "--help"], True), (["--config", "x.toml", "verify", "--help"], True),
    (["--config=x.toml", "status", "--help"], True),
    (["--help"], False), ([], False), (["--bogus"], False), (["no-such-command"], False)])
def test_command_modules_picks_the_typed_command_only(argv: list[str], lazy: bool) -> None:
    from hub.cli import COMMAND_MODULES, command_modules

    assert (command_modules(argv) != COMMAND_MODULES) is lazy


def test_scb_verify_imports_no_other_component_cli() -> None:
    code = ("import sys, hub.cli\n"
            "try:\n    hub.cli.main(['verify', '--help'])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('LOADED ' + ' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: scb verify" in proc.stdout
    loaded = set(proc.stderr.split("LOADED ")[-1].split())
    assert "hub" in loaded
    assert not loaded & {"dashboard", "aiohttp", "alembic", "pymodbus", "fleet", "home_assistant"}, loaded


def test_scb_help_still_lists_every_command() -> None:
    from hub.cli import COMMANDS

    proc = subprocess.run([sys.executable, "-m", "hub.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"    {command} " in proc.stdout or f"    {command}\n" in proc.stdout, command


def test_open_existing_at_head_imports_no_alembic_and_an_older_schema_is_still_migrated(tmp_path: Path) -> None:
    from scb.db import open_existing
    from scb.migrate import current_revision, head_revision, upgrade

    open_database(Config(data={"hub": {"data_dir": str(tmp_path)}}))  # a hub database at head
    code = ("import sys\nfrom scb.config import Config\nfrom scb.db import open_existing\n"
            f"assert open_existing(Config(data={{'hub': {{'data_dir': {str(tmp_path)!r}}}}})) is not None\n"
            "print('alembic' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stdout + proc.stderr
    older = tmp_path / "older"
    older.mkdir()
    url = f"sqlite:///{older / 'scb.sqlite3'}"
    upgrade(url, "0004")
    assert current_revision(url) == "0004"
    assert open_existing(Config(data={"hub": {"data_dir": str(older)}})) is not None
    assert current_revision(url) == head_revision()


@pytest.mark.parametrize("env_level, expected", [(None, "WARNING"), ("DEBUG", "DEBUG")])
def test_hub_log_level_sets_every_commands_level_and_scb_log_level_overrides_it(
        tmp_path: Path, env_level: str | None, expected: str) -> None:
    config = tmp_path / "scb.toml"
    config.write_text(f'[hub]\nlog_level = "warning"\ndata_dir = "{tmp_path / "data"}"\n')
    code = ("import logging, sys\nfrom hub import cli\ncli.main(['--config', sys.argv[1], 'status'])\n"
            "print('level', logging.getLevelName(logging.getLogger().level))")
    env = {k: v for k, v in os.environ.items() if k != "SCB_LOG_LEVEL" and not k.startswith("SCB_HUB__")}
    if env_level is not None:
        env["SCB_LOG_LEVEL"] = env_level
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.splitlines()[-1] == f"level {expected}", out.stdout + out.stderr
