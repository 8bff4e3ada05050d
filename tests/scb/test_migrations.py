"""Alembic migrations: `upgrade head` on an empty database gives exactly the models' schema, on SQLite and PostgreSQL.

If this fails after you changed a model, add a revision: `scb db revision -m "what changed"` (docs/database.md).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text

from scb.config import Config
from hub.database import load_models
from scb.db import Base, make_engine, open_database, upgrade
from scb.migrate import SchemaError, current_revision, head_revision, schema_diff
from tests.conftest import errors_at_once

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("scb", "energy_manager", "mam_client", "settlement")


def import_every_project_module() -> None:
    """Tables defined anywhere in the project (not only in the listed model modules) must be migrated too."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if ".migrations" in info.name:
                continue
            importlib.import_module(info.name)


def url(tmp_path: Path, name: str = "scb.sqlite3") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_upgrade_head_on_an_empty_database_gives_exactly_the_models(database_url: str) -> None:
    import_every_project_module()
    load_models()
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = schema_diff(conn)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == [], "models and migrations differ; add a revision (scb db revision -m ...):\n" + "\n".join(
        str(d) for d in diff)
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert {"mam_messages", "mam_channels", "energy_readings"} <= tables


def test_the_alembic_command_line_does_the_same(tmp_path: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCB_")}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "-c", str(REPO / "scb" / "migrations" / "alembic.ini"),
         "-x", f"url={database_url}", "upgrade", "head"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert schema_diff(conn) == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_one_line_of_history() -> None:
    from alembic.script import ScriptDirectory

    from scb.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "two revisions share a parent: merge them (alembic merge)"


def test_upgrade_is_idempotent_and_downgrade_reverses_it(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        from alembic import command

        from scb.migrate import alembic_config

        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade(engine)
        with engine.connect() as conn:
            assert schema_diff(conn) == []
    finally:
        engine.dispose()


def test_concurrent_starts_all_succeed(database_url: str) -> None:
    """Three processes start at once on a new hub: each migrates; exactly one creates the tables."""
    def start() -> None:
        engine = make_engine(database_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    assert errors_at_once(start) == []
    assert current_revision(database_url) == head_revision()


def test_data_survives_an_upgrade_run(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO energy_state (key, value_json, updated_at) "
                              "VALUES ('k', '{}', '2025-01-01 00:00:00')"))
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value_json FROM energy_state WHERE key='k'")).scalar_one() == "{}"
    finally:
        engine.dispose()


def _insert_row(conn: Any, table: str, values: dict[str, Any]) -> None:
    """A row with `values` and a placeholder of its type in every other NOT NULL column without a default."""
    row = dict(values)
    for _cid, name, type_, notnull, default, pk in conn.execute(text(f"PRAGMA table_info({table})")).all():
        if name in row or not notnull or default is not None or pk:
            continue
        kind = str(type_).upper()
        row[name] = (1 if "INT" in kind or "BOOL" in kind else b"\x00" if "BLOB" in kind
                     else "2026-01-01 00:00:00" if "DATE" in kind else "x")
    columns = ", ".join(row)
    conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)


def test_a_hub_with_published_and_settled_readings_upgrades_through_every_revision(tmp_path: Path) -> None:
    """Rows that other tables refer to (a message its readings, a reading its proof) survive the revisions that
    rebuild their tables on SQLite (SQLite refuses to drop a referenced table while foreign keys are enforced)."""
    engine = make_engine(url(tmp_path))
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:
            _insert_row(conn, "mam_messages", {"id": 1, "channel": "readings", "message": "ABC", "state": "attached"})
            _insert_row(conn, "energy_readings", {"id": 1, "hub": "hub", "meter": "a", "seq": 1, "party": "h1",
                                                  "message_id": 1, "period": 1})
            _insert_row(conn, "settlement_systems", {"id": 1})
            _insert_row(conn, "settlement_periods", {"id": 1, "system_ref": 1, "period_id": 1})
            _insert_row(conn, "settlement_proofs", {"reading_id": 1, "period_ref": 1})
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, message_id, period FROM energy_readings")).all() == [(1, 1, 1)]
            assert conn.execute(text("SELECT reading_id, period_ref FROM settlement_proofs")).all() == [(1, 1)]
            assert conn.execute(text("SELECT id, state FROM mam_messages")).all() == [(1, "attached")]
            assert [(i, part, zlib.decompress(data)) for i, part, data in conn.execute(text(
                "SELECT message_id, part, data FROM mam_message_bodies")).all()] == [
                (1, "message", b"ABC")]  # 0009: the message's plaintext, out of its row, deflated
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1  # enforced again after migrating
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_0009_moves_each_messages_large_parts_out_of_its_row_and_back(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    try:
        upgrade(engine, "0008")
        with engine.begin() as conn:
            _insert_row(conn, "mam_messages", {"id": 1, "channel": "readings", "message": "QUEUED9", "state": "queued"})
            _insert_row(conn, "mam_messages", {"id": 2, "channel": "readings", "message": "DONE9", "state": "attached",
                                               "payload": "PAYLOAD9", "bundle_trytes": '["TX9"]'})
        upgrade(engine)
        with engine.connect() as conn:
            assert [(i, part, zlib.decompress(data)) for i, part, data in conn.execute(text(
                "SELECT message_id, part, data FROM mam_message_bodies ORDER BY message_id, part")).all()] == [
                (1, "message", b"QUEUED9"), (2, "bundle", b'["TX9"]'), (2, "message", b"DONE9"),
                (2, "payload", b"PAYLOAD9")]
            columns = {c["name"] for c in inspect(conn).get_columns("mam_messages")}
            assert not columns & {"message", "payload", "bundle_trytes"}
        from alembic import command

        from scb.migrate import alembic_config, migration_transaction

        with migration_transaction(engine) as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0008")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, message, payload, bundle_trytes FROM mam_messages ORDER BY id")).all() \
                == [(1, "QUEUED9", None, None), (2, "DONE9", "PAYLOAD9", '["TX9"]')]
    finally:
        engine.dispose()


def test_a_migration_that_leaves_a_dangling_reference_is_refused(tmp_path: Path) -> None:
    from scb.migrate import migration_transaction

    engine = make_engine(url(tmp_path))
    try:
        upgrade(engine)
        with migration_transaction(engine):
            pass  # nothing refers to a missing row yet
        with pytest.raises(SchemaError, match="1 row.s. refer to missing rows .first: table energy_readings"):
            with migration_transaction(engine) as conn:
                _insert_row(conn, "energy_readings", {"hub": "hub", "meter": "a", "seq": 1, "party": "h1",
                                                      "message_id": 99})  # no message 99
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM energy_readings")).scalar_one() == 0  # rolled back
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


def test_0008_gives_each_meter_a_head_at_its_newest_reading(database_url: str) -> None:
    """The heads the monitor resumes from are the newest readings by seq (not by insertion or time), per meter."""
    engine = make_engine(database_url)
    rows = [("a", 2, "h1", 2_000, 12), ("b", 1, "h2", 1_500, 7), ("a", 3, "h1", 3_000, 15), ("a", 1, "h1", 1_000, 10)]
    try:
        upgrade(engine, "0007")
        with engine.begin() as conn:
            for meter, seq, party, ts_ms, register in rows:
                conn.execute(text(
                    "INSERT INTO energy_readings (hub, meter, seq, party, circuit, ts_ms, register_wh, power_w, salt, "
                    "canonical, digest, delta_wh, flags, window_start_ms, created_at) VALUES ('hub', :m, :s, :p, "
                    "'consumption', :t, :r, 0, '00', :c, :d, 0, '', 0, '2026-12-03 00:00:00')"),
                    {"m": meter, "s": seq, "p": party, "t": ts_ms, "r": register, "c": f"{meter}{seq}".encode(),
                     "d": f"{meter}{seq}"})
        upgrade(engine)
        with engine.connect() as conn:
            heads = conn.execute(text("SELECT hub, meter, party, seq, ts_ms, register_wh FROM energy_meter_heads "
                                      "ORDER BY meter")).all()
            assert [tuple(h) for h in heads] == [("hub", "a", "h1", 3, 3_000, 15), ("hub", "b", "h2", 1, 1_500, 7)]
            assert conn.execute(text("SELECT count(*) FROM energy_readings")).scalar_one() == 4
    finally:
        engine.dispose()


def test_a_database_made_by_create_all_is_adopted_when_it_matches(database_url: str) -> None:
    load_models()
    engine = make_engine(database_url)
    try:
        Base.metadata.create_all(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_an_unversioned_database_that_differs_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        other = MetaData()
        Table("mam_messages", other, Column("id", Integer, primary_key=True))
        other.create_all(engine)
        with pytest.raises(SchemaError, match="no migration history"):
            upgrade(engine)
        assert set(inspect(engine).get_table_names()) == {"mam_messages"}  # untouched
    finally:
        engine.dispose()


def test_a_database_from_a_newer_scb_is_refused_with_advice(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaError, match="newer version of SCB"):
            upgrade(engine)
    finally:
        engine.dispose()


def test_open_database_runs_the_migrations(tmp_path: Path, database_url: str) -> None:
    factory = open_database(Config(data={"hub": {"data_dir": str(tmp_path)}, "database": {"url": database_url}}))
    engine = factory.kw["bind"]
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_scb_db_commands(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from hub.cli import main

    target = database_url
    assert main(["db", "current", "--url", target]) == 0
    assert "not created yet" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", target]) == 0
    assert f"empty -> {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--url", target]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "check"]) == 0
    assert "exactly" in capsys.readouterr().out


def test_revision_workflow_for_a_changed_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer adds a table; `new_revision` writes 0002 that creates it, and then the schemas agree again."""
    import shutil

    import scb.migrate as migrate

    migrations = tmp_path / "migrations"
    shutil.copytree(REPO / "scb" / "migrations", migrations, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", migrations)
    load_models()
    with pytest.raises(SchemaError, match="nothing to add"):
        migrate.new_revision("no change")
    previous_head = head_revision()
    extra = Table("zz_test_extra", Base.metadata, Column("id", Integer, primary_key=True),
                  Column("note", Integer, nullable=True, index=True))
    try:
        path = migrate.new_revision("add zz test extra")
        assert path.parent == migrations / "versions"
        assert path.name == f"{int(previous_head) + 1:04d}_add_zz_test_extra.py"
        source = path.read_text()
        assert "create_table('zz_test_extra'" in source
        assert f"down_revision: str | Sequence[str] | None = '{previous_head}'" in source
        engine = make_engine(url(tmp_path))
        try:
            upgrade(engine)
            assert current_revision(engine) == path.name[:4]
            with engine.connect() as conn:
                assert schema_diff(conn) == []
        finally:
            engine.dispose()
    finally:
        Base.metadata.remove(extra)


_UPGRADE_AND_REPORT = """
import sys
from scb.migrate import upgrade
upgrade(sys.argv[1])
print('alembic' in sys.modules)
"""


def test_a_start_with_nothing_to_migrate_does_not_import_alembic(tmp_path: Path) -> None:
    """Every process calls upgrade at start; Alembic costs each ~37 MB for life (issue 16), so it is imported only
    when the database is not at the newest revision, and then it migrates as before."""
    from alembic import command

    from scb.migrate import alembic_config, head_revision_quick

    load_models()  # schema_diff below compares with every model, also when this test runs alone
    assert head_revision_quick() == head_revision()  # the text reading of the revision files agrees with Alembic's
    url = f"sqlite:///{tmp_path / 'scb.sqlite3'}"

    def fresh_upgrade() -> bool:
        out = subprocess.run([sys.executable, "-c", _UPGRADE_AND_REPORT, url], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip() == "True"

    assert fresh_upgrade() is True  # an empty database: migrated by Alembic
    assert fresh_upgrade() is False  # at head: nothing imported
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
        assert current_revision(engine) != head_revision()
        assert fresh_upgrade() is True  # one revision behind: Alembic again, to the head
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert schema_diff(conn) == []
    finally:
        engine.dispose()
