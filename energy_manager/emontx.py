"""The emonTx-style serial line protocol (pure): `MSG:12,Vrms:231.2,P1:420,E1:12345,...`.

One frame per line, comma-separated `key:value` fields, values decimal numbers, lines ending in LF or CRLF.
The parser is total: for any bytes it returns values or raises LineError with a `kind` for the counters
(a serial line delivers noise, half lines after a reconnect, and garbage at the wrong baud rate; none of it may
take the sampling loop down - the fuzz test feeds it tens of thousands of such lines).
"""
from __future__ import annotations

import math
import re

from scb.errors import DataError

#: Longest accepted line, in bytes. An emonTx frame with every field is about 150 bytes.
MAX_LINE_BYTES = 512
MAX_FIELDS = 48
KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
#: Largest magnitude accepted as a number: beyond it a float no longer holds every whole Wh exactly.
MAX_MAGNITUDE = 1e15

EMPTY = "empty"
TOO_LONG = "too_long"
NOT_ASCII = "not_ascii"
MALFORMED = "malformed"
NON_NUMERIC = "non_numeric"
DUPLICATE = "duplicate_key"
LINE_ERROR_KINDS = (EMPTY, TOO_LONG, NOT_ASCII, MALFORMED, NON_NUMERIC, DUPLICATE)


class LineError(DataError):
    """A serial line that is not a frame; `kind` names the counter it is counted under."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_line(raw: bytes) -> dict[str, float]:
    """Parse one line (with or without its line ending) into {key: value}."""
    if len(raw) > MAX_LINE_BYTES:
        raise LineError(TOO_LONG, f"line of {len(raw)} bytes is longer than {MAX_LINE_BYTES}")
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise LineError(NOT_ASCII, "line is not ASCII (noise, or the wrong baud rate?)") from None
    text = text.rstrip("\r\n")
    if not text.strip():
        raise LineError(EMPTY, "empty line")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text if ch != "\t"):
        raise LineError(NOT_ASCII, "line contains control characters")
    fields = text.split(",")
    if len(fields) > MAX_FIELDS:
        raise LineError(MALFORMED, f"line has {len(fields)} fields, more than {MAX_FIELDS}")
    values: dict[str, float] = {}
    for position, field in enumerate(fields, start=1):
        key, sep, value = field.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or KEY_RE.fullmatch(key) is None:
            raise LineError(MALFORMED, f"field {position} is not key:value")
        if NUMBER_RE.fullmatch(value) is None:
            raise LineError(NON_NUMERIC, f"value of {key} is not a decimal number")
        number = float(value)
        if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
            raise LineError(NON_NUMERIC, f"value of {key} is out of the representable range")
        if key in values:
            raise LineError(DUPLICATE, f"key {key} appears twice")
        values[key] = number
    return values
