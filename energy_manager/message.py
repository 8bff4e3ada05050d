"""The MAM message that carries a publish window's readings (pure).

Body: sorted-key compact JSON, then iota.js `asciiToTrytes` for the outbox::

    {"hub":"scb-demo-hub","part":1,"parts":1,"readings":[{...reading...},...],"schema":1,
     "type":"scb.readings","window_end_ms":1750464300000,"window_start_ms":1750464000000}

Each element of `readings` is a reading's canonical JSON object itself (not a string), so a reader recovers the
canonical bytes by re-encoding it with `energy_manager.reading.encode_json` - the canonical form is unique, so
this gives back exactly the hashed bytes, and `decode_message` checks every reading while doing it.
A window with more readings than fit in one message (`max_bytes`) is split into parts 1..n.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from energy_manager.reading import (
    ID_RE,
    Reading,
    ReadingError,
    encode_json,
    reading_from_obj,
    strict_json_loads,
)

MESSAGE_TYPE = "scb.readings"
MESSAGE_SCHEMA = 1
MESSAGE_FIELDS = frozenset({"hub", "part", "parts", "readings", "schema", "type", "window_end_ms", "window_start_ms"})


@dataclass(frozen=True)
class ReadingsMessage:
    hub: str
    window_start_ms: int
    window_end_ms: int
    part: int
    parts: int
    readings: tuple[Reading, ...]


def _body(hub: str, start: int, end: int, part: int, parts: int, readings: Sequence[Reading]) -> bytes:
    return encode_json({
        "hub": hub,
        "part": part,
        "parts": parts,
        "readings": [r.as_dict() for r in readings],
        "schema": MESSAGE_SCHEMA,
        "type": MESSAGE_TYPE,
        "window_end_ms": end,
        "window_start_ms": start,
    })


def encode_window(hub: str, window_start_ms: int, window_end_ms: int, readings: Sequence[Reading],
                  max_bytes: int) -> list[tuple[bytes, list[Reading]]]:
    """Message bodies for one window's readings, each at most `max_bytes`, with the readings each carries.

    Readings keep their order; parts are filled greedily. Raises ReadingError if a single reading cannot fit.
    """
    if not readings:
        return []
    overhead = len(_body(hub, window_start_ms, window_end_ms, 99999, 99999, []))
    groups: list[list[Reading]] = [[]]
    size = overhead
    for reading in readings:
        item = len(encode_json(reading.as_dict())) + 1  # the comma
        if overhead + item > max_bytes:
            raise ReadingError(f"a reading of {item} bytes does not fit in a message of {max_bytes} bytes")
        if size + item > max_bytes and groups[-1]:
            groups.append([])
            size = overhead
        groups[-1].append(reading)
        size += item
    parts = len(groups)
    return [(_body(hub, window_start_ms, window_end_ms, i, parts, g), g) for i, g in enumerate(groups, start=1)]


def decode_message(body: bytes | str) -> ReadingsMessage:
    """Parse and check a readings message (from the tangle or the archive); ReadingError says what is wrong."""
    data = body.encode("ascii", "replace") if isinstance(body, str) else bytes(body)
    obj = strict_json_loads(data, "message")
    if not isinstance(obj, dict):
        raise ReadingError("a readings message is a JSON object")
    if obj.get("type") != MESSAGE_TYPE or obj.get("schema") != MESSAGE_SCHEMA:
        raise ReadingError(f"not a readings message (type {MESSAGE_TYPE!r}, schema {MESSAGE_SCHEMA} expected)")
    if set(obj) != MESSAGE_FIELDS:
        raise ReadingError(f"readings message fields must be {', '.join(sorted(MESSAGE_FIELDS))}")
    hub = obj["hub"]
    if not isinstance(hub, str) or ID_RE.fullmatch(hub) is None:
        raise ReadingError("readings message hub is not a valid id")
    for key in ("part", "parts", "window_start_ms", "window_end_ms"):
        if type(obj[key]) is not int:
            raise ReadingError(f"readings message {key} must be an integer")
    if not 1 <= obj["part"] <= obj["parts"]:
        raise ReadingError("readings message part must be within 1..parts")
    if not isinstance(obj["readings"], list):
        raise ReadingError("readings message readings must be a list")
    readings = tuple(reading_from_obj(item) for item in obj["readings"])
    for r in readings:
        if r.hub != hub:
            raise ReadingError(f"reading {r.meter}#{r.seq} names hub {r.hub!r} inside a message of hub {hub!r}")
        if not obj["window_start_ms"] <= r.ts_ms < obj["window_end_ms"]:
            raise ReadingError(f"reading {r.meter}#{r.seq} lies outside the message's window")
    if encode_json(obj) != data:
        raise ReadingError("readings message is not in canonical form")
    return ReadingsMessage(hub, obj["window_start_ms"], obj["window_end_ms"], obj["part"], obj["parts"], readings)
