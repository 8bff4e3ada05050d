"""Errors of the MAM v0 codec: one hierarchy under `MamError` (itself a `scb.errors.DataError`).

    MamError
    ├── InvalidInput        an argument is not usable: not trytes, wrong length, bad security/mode
    ├── InvalidChannel      channel settings or state that would break the chain (SPEC §11 items 9-10)
    └── InvalidMessage      a payload that does not verify
        ├── InvalidPayload      malformed: truncated, bad integer encoding, impossible lengths
        ├── WrongKeyOrRoot      the hmac has no valid security level: wrong side key, wrong root, or
        │                       tampered header/nextRoot/message/nonce (mam.js: "Message Hash did not have a
        │                       hamming weight of zero, security level is invalid")
        └── SignatureMismatch   the signature does not lead to the root (mam.js: "Signature did not match
                                expected root")
"""
from __future__ import annotations

from scb.errors import DataError


class MamError(DataError):
    """Base of every MAM codec error."""


class InvalidInput(MamError):
    """An argument (seed, side key, message, root, security, mode) is not usable."""


class InvalidChannel(MamError):
    """Channel settings or a serialised channel state that the reference's chain cannot follow."""


class InvalidMessage(MamError):
    """A payload that does not parse or verify."""


class InvalidPayload(InvalidMessage):
    """The payload is malformed (truncated, bad integer encoding, impossible lengths)."""


class WrongKeyOrRoot(InvalidMessage):
    """No valid security level after unmasking: wrong side key or root, or a tampered payload."""


class SignatureMismatch(InvalidMessage):
    """The signature and authentication path do not lead to the expected root."""
