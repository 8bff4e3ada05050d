"""The SQLite knobs of [database]: the busy timeout and the size cap reach every connection."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from scb.config import load_config
from scb.db import make_engine
from scb.errors import ConfigError
from scb.loop import is_transient


def test_busy_timeout_and_size_cap_from_the_configuration(tmp_path: Path) -> None:
    config = load_config(environ={"SCB_DATA_DIR": str(tmp_path), "SCB_DATABASE__BUSY_TIMEOUT_S": "0.25",
                                  "SCB_DATABASE__MAX_SIZE_MB": "1"})
    engine = make_engine(config.database_url, config.sqlite_synchronous, config.sqlite_busy_timeout_ms,
                         config.sqlite_max_size_mb)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 250
            page = conn.execute(text("PRAGMA page_size")).scalar()
            assert conn.execute(text("PRAGMA max_page_count")).scalar() == 1024 * 1024 // page
        with pytest.raises(OperationalError, match="full") as full:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE ballast (b BLOB)"))
                for _ in range(64):  # 2 MiB into a 1 MiB database
                    conn.execute(text("INSERT INTO ballast VALUES (zeroblob(32768))"))
        assert is_transient(full.value)  # the failure policy retries a full database in place
    finally:
        engine.dispose()


@pytest.mark.parametrize(("key", "value"), [("BUSY_TIMEOUT_S", "0"), ("BUSY_TIMEOUT_S", "true"),
                                            ("MAX_SIZE_MB", "-1"), ("MAX_SIZE_MB", "1.5")])
def test_bad_knobs_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    config = load_config(environ={"SCB_DATA_DIR": str(tmp_path), f"SCB_DATABASE__{key}": value})
    with pytest.raises(ConfigError, match=f"database.{key.lower()}"):
        config.sqlite_busy_timeout_ms if key == "BUSY_TIMEOUT_S" else config.sqlite_max_size_mb  # noqa: B018
