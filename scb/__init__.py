"""Shared plumbing of Smart Community Brain: configuration, database, secrets, errors and the `scb` command."""
__version__ = "0.1.0"
