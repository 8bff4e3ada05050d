"""The one exception tree of SCB.

Callers catch at the level they can act on:

    ScbError                      anything SCB raises on purpose; carries a process exit code
    ├── ConfigError               bad configuration (file, environment, flags)        -> fix the config
    ├── SecretFileError           a seed / key / keystore file missing or too open     -> fix the file
    ├── DataError                 input that is wrong and will stay wrong              -> never retry
    │   └── (mam_client.mam.errors.MamError and its subclasses, reading errors, proof errors)
    └── TransportError            a peer could not be reached or failed                -> retry with backoff
        ├── NodeUnavailable       the IOTA node
        └── ChainUnavailable      the Ethereum RPC

This module is pure (no I/O) so that the consensus-critical core can raise these without importing plumbing.
"""
from __future__ import annotations


class ScbError(Exception):
    """Base of every deliberate SCB error. `exit_code` is what the CLI exits with when it reaches the top."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ScbError):
    """The configuration cannot be used; the message names the setting and what is expected."""


class SecretFileError(ScbError):
    """A secret file (seed, side key, keystore, password) is missing, unreadable or readable by others."""


class DataError(ScbError):
    """Input data is invalid; retrying will not help. Exit code 1 where a verdict is asked for."""

    exit_code = 1


class TransportError(ScbError):
    """A network peer was unreachable or answered with a failure; the operation may be retried later."""


class NodeUnavailable(TransportError):
    """The IOTA node could not be reached or refused the request."""


class ChainUnavailable(TransportError):
    """The Ethereum JSON-RPC endpoint could not be reached or refused the request."""
