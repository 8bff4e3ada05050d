"""What `scb run` starts: the embedded defaults start a local chain and tangle node; a configuration with an
external node and chain starts neither."""
from __future__ import annotations

from pathlib import Path

from scb.config import Config, load_config
from hub.processes import plan, process_status, write_process_file

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "scb.example.toml"


def test_embedded_defaults_start_everything(tmp_path: Path) -> None:
    names = [c.name for c in plan(Config(data={"hub": {"data_dir": str(tmp_path)}}), None)]
    assert names == ["anvil", "tangle-node", "energy-manager", "mam-client", "settlement", "dashboard",
                     "demo-households"]


def test_external_node_and_chain_start_neither(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ={"SCB_DATA_DIR": str(tmp_path)})
    children = plan(config, str(EXAMPLE))
    assert [c.name for c in children] == ["energy-manager", "mam-client", "settlement", "dashboard"]
    assert all(c.argv[-3:-1] == ["--config", str(EXAMPLE)] for c in children)
    assert all(c.log_path.parent == tmp_path / "logs" for c in children)


def test_process_table_reports_what_is_running(tmp_path: Path) -> None:
    children = plan(Config(data={"hub": {"data_dir": str(tmp_path)}}), None)
    write_process_file(tmp_path, children)  # nothing started: no pids
    assert {p["name"] for p in process_status(tmp_path)} == {c.name for c in children}
    assert not any(p["running"] for p in process_status(tmp_path))
    assert process_status(tmp_path / "elsewhere") == []


def test_the_plan_knows_each_command_by_the_module_that_registers_it() -> None:
    """The supervisor finds its commands without importing the `scb` command table (issue 16), by the module
    hub.cli imports first for each (COMMAND_MODULE is derived from hub.cli.COMMANDS, so it cannot drift)."""
    from hub.processes import COMMAND_MODULE, RUN_COMMANDS, available_commands

    assert set(COMMAND_MODULE) == set(RUN_COMMANDS)
    assert available_commands() == set(RUN_COMMANDS)


def test_the_supervisor_imports_no_heavy_library(tmp_path: Path) -> None:
    """`scb run` lives as long as the hub: planning, announcing and reading heartbeats need none of these."""
    import subprocess
    import sys

    probe = ("import sys\nfrom scb.config import Config\nfrom hub.processes import plan\n"
             "from hub.supervisor import endpoints, first_attached_address\n"
             f"c = Config(data={{'hub': {{'data_dir': {str(tmp_path)!r}}}}})\n"
             "names = {ch.name for ch in plan(c, None)}\nendpoints(c, names)\n"
             "print(first_attached_address(c, {}))\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'web3', 'eth_account', 'eth_utils', 'sqlalchemy', 'alembic', 'iota', 'aiohttp', 'pymodbus', 'paho'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["None", "[]"]


def test_the_first_attached_address_is_read_with_plain_sqlite(tmp_path: Path) -> None:
    import sqlite3

    from hub.supervisor import close_readers, first_attached_address
    from scb.db import make_engine, upgrade

    config = Config(data={"hub": {"data_dir": str(tmp_path)}})
    readers: dict[str, object] = {}
    assert first_attached_address(config, readers) is None  # no database yet: none created
    assert not (tmp_path / "scb.sqlite3").exists()
    upgrade(make_engine(config.database_url))
    assert first_attached_address(config, readers) is None
    db = sqlite3.connect(tmp_path / "scb.sqlite3")
    for i, (state, address) in enumerate([("prepared", None), ("attached", "B" * 81), ("attached", "C" * 81)]):
        db.execute("INSERT INTO mam_messages (id, channel, state, address, attempts, created_at) "
                   "VALUES (?, 'readings', ?, ?, 0, '2026-01-01 00:00:00')", (i + 1, state, address))
    db.commit()
    db.close()
    assert first_attached_address(config, readers) == "B" * 81
    close_readers(readers)
    assert readers == {}


def test_anvil_runs_as_its_platform_binary_else_the_launcher(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import platform

    import pytest

    from hub.processes import anvil_command
    from scb.errors import ConfigError

    repo = Path(__file__).resolve().parents[2]
    real = Path(anvil_command(repo))
    assert real.name == "anvil" and "node_modules/@foundry-rs/anvil-" in str(real), real  # no Node launcher
    assert real.read_bytes()[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe")  # a native executable, not bin.mjs

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="anvil is not installed"):
        anvil_command(tmp_path)
    launcher = tmp_path / "node_modules" / ".bin" / "anvil"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/usr/bin/env node\n")
    assert anvil_command(tmp_path) == str(launcher)
    binary = tmp_path / "node_modules" / "@foundry-rs" / "anvil-linux-arm64" / "bin" / "anvil"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    assert anvil_command(tmp_path) == str(launcher)  # not executable: not taken
    os.chmod(binary, 0o755)
    assert anvil_command(tmp_path) == str(binary)


def test_scb_run_migrates_first_in_a_process_of_its_own(tmp_path: Path) -> None:
    """So that no long-running process finds a migration to do and keeps Alembic loaded (issue 16)."""
    from hub.supervisor import migrate_first
    from scb.migrate import at_head
    from scb.db import make_engine

    toml = tmp_path / "scb.toml"
    toml.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n')
    config = load_config(str(toml))
    assert migrate_first(config, str(toml)) == 0
    engine = make_engine(config.database_url)
    try:
        assert at_head(engine)
    finally:
        engine.dispose()
    assert "-> " in (tmp_path / "logs" / "db-upgrade.log").read_text()
    assert migrate_first(config, str(toml)) == 0  # at the head: nothing to do, still 0
    assert "at " in (tmp_path / "logs" / "db-upgrade.log").read_text().splitlines()[-1]
