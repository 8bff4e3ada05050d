"""tests/scb: the database-facing tests run on SQLite and on a real PostgreSQL (tests/services/postgres.py)."""
from tests.services.postgres import database_url, postgres_server, postgresql_url  # noqa: F401 (fixtures)
