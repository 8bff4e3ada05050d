"""Alembic environment for the SCB project database.

The metadata is `scb.db.Base.metadata`, holding every table once the caller imported the components' models
(`hub.database.load_models`, which `scb db revision` does first). The database
comes, in order, from: a connection handed over by `scb.migrate.upgrade` (the normal path), `-x url=...` on the
alembic command line, `sqlalchemy.url` in the ini file, or the SCB configuration (scb.toml / SCB_* variables).
SQLite migrations render as batch operations (SQLite cannot ALTER most things) and run in one transaction, with
foreign keys unenforced and checked before it commits (scb.migrate.migration_transaction).
"""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from scb.db import Base, make_engine
from scb.migrate import migration_transaction

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from scb.config import load_config

    return load_config().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
        compare_type=True,
        compare_server_default=True,
    )


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with migration_transaction(engine) as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
