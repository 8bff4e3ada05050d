"""Alembic environment of the fleet's database (fleet.models.FleetBase), run by `fleet.db.upgrade` with a connection
it hands over. Its version table is `fleet.db.VERSION_TABLE`, so that a fleet's and a hub's history can never be
taken for each other, even in one database."""
from __future__ import annotations

from alembic import context

from fleet.db import VERSION_TABLE
from fleet.models import FleetBase

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=FleetBase.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite", transactional_ddl=True, compare_type=True,
                  compare_server_default=True)
with context.begin_transaction():
    context.run_migrations()
