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
