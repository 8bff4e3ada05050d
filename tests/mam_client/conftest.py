"""tests/mam_client: the publisher's database-facing tests run on SQLite and on a real PostgreSQL
(tests/services/postgres.py): the one-time key index and the outbox claim rest on one writer at a time, which
PostgreSQL gets from scb.db's writer lock instead of SQLite's BEGIN IMMEDIATE."""
from tests.services.postgres import database_url, postgres_server, postgresql_url  # noqa: F401 (fixtures)
