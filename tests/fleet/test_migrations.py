"""The fleet's own migrations (fleet/migrations) give exactly its models, on SQLite and PostgreSQL, idempotently,
and never touch a hub's migration history."""
from __future__ import annotations

from sqlalchemy import inspect

from fleet.db import VERSION_TABLE, upgrade
from fleet.models import FleetBase
from scb.db import make_engine
from tests.services.postgres import database_url, postgres_server, postgresql_url  # noqa: F401 (fixtures)


def test_upgrade_gives_exactly_the_models_and_is_idempotent(database_url: str) -> None:  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)  # a second start changes nothing
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                         "version_table": VERSION_TABLE})
            diff = [d for d in compare_metadata(ctx, FleetBase.metadata)
                    if not (isinstance(d, tuple) and getattr(d[1], "name", None) == VERSION_TABLE)]
            tables = set(inspect(conn).get_table_names())
            revision = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}) \
                .get_current_revision()
    finally:
        engine.dispose()
    assert diff == [], "the fleet's models and migrations differ:\n" + "\n".join(str(d) for d in diff)
    assert tables == set(FleetBase.metadata.tables) | {VERSION_TABLE}
    assert "alembic_version" not in tables  # the hub's version table: a fleet database is not a hub's
    assert revision == "0001"
