"""Register words to values (pure).

A Modbus register is a 16-bit word; a 32-bit value spans two, and manufacturers disagree on which comes first:
Eastron SDM meters send the high word first (and IEEE-754 float32), Carlo Gavazzi EM24/EM340 the low word first
(int32). A field names its type and word order, so the same code decodes every profile. A value that is NaN or
infinite (a float32 meter that is starting, or noise) is refused (`BadValue`), never passed on as a number.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scb.errors import DataError

TYPES: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
FUNCTIONS = ("input", "holding")
WORD_ORDERS = ("high_first", "low_first")
#: Most registers one read request may ask for (the Modbus specification's limit for function 03/04).
MAX_READ = 125
#: Largest hole between two fields still read in one request. Why: one request with a few unused words is
#: cheaper on a 9600-baud bus than two requests (each has a turnaround of several ms), but some meters answer
#: an exception for addresses they do not implement, so the hole stays small.
MAX_GAP = 8


class BadValue(DataError):
    """A register value that is not a number (NaN, infinite) or cannot be decoded."""


@dataclass(frozen=True)
class Field:
    """One device value in a register map."""

    name: str
    address: int  # protocol address (0-based), as sent on the wire
    function: str = "input"  # "input" (function 04) or "holding" (function 03)
    type: str = "float32"
    word_order: str = "high_first"
    scale: float = 1.0  # multiplied after decoding: 1000 for kWh -> Wh, 0.1 for a /10 register
    unit: str = ""

    @property
    def words(self) -> int:
        return TYPES[self.type]


@dataclass(frozen=True)
class Block:
    """One read request: `count` registers from `address` with `function`, covering `fields`."""

    function: str
    address: int
    count: int
    fields: tuple[Field, ...]


def decode_words(type_: str, word_order: str, words: Sequence[int]) -> float:
    """The number in `words` (one or two 16-bit registers as received)."""
    if len(words) != TYPES[type_]:
        raise BadValue(f"{type_} needs {TYPES[type_]} register(s), got {len(words)}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise BadValue(f"register words out of range: {list(words)}")
    ordered = list(words) if word_order == "high_first" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[type_]
    (value,) = struct.unpack(fmt, raw)
    return float(value)


def decode_field(field: Field, words: Sequence[int]) -> float:
    """The field's value in its unit (scale applied); BadValue for NaN or infinity."""
    value = decode_words(field.type, field.word_order, words)
    if not math.isfinite(value):
        raise BadValue(f"{field.name} at address {field.address} is {value!r} (words {_hex(words)})")
    return value * field.scale


def plan(fields: Sequence[Field]) -> list[Block]:
    """Group the fields into as few read requests as the limits allow (per function, ascending addresses)."""
    blocks: list[Block] = []
    for function in FUNCTIONS:
        current: list[Field] = []
        for f in sorted((f for f in fields if f.function == function), key=lambda f: f.address):
            if current:
                start = current[0].address
                end = max(c.address + c.words for c in current)
                if f.address - end <= MAX_GAP and f.address + f.words - start <= MAX_READ:
                    current.append(f)
                    continue
                blocks.append(_block(function, current))
            current = [f]
        if current:
            blocks.append(_block(function, current))
    return blocks


def _block(function: str, fields: list[Field]) -> Block:
    start = fields[0].address
    end = max(f.address + f.words for f in fields)
    return Block(function, start, end - start, tuple(fields))


def decode_block(block: Block, registers: Sequence[int]) -> tuple[dict[str, float], list[BadValue]]:
    """The values of a block's fields from its registers; fields that do not decode are returned as errors
    (so one NaN register does not hide the good values of the others)."""
    if len(registers) < block.count:
        return {}, [BadValue(f"{block.count} registers asked from {block.address}, {len(registers)} received")]
    values: dict[str, float] = {}
    errors: list[BadValue] = []
    for f in block.fields:
        offset = f.address - block.address
        try:
            values[f.name] = decode_field(f, registers[offset: offset + f.words])
        except BadValue as exc:
            errors.append(exc)
    return values, errors


def encode_value(type_: str, word_order: str, value: float) -> list[int]:
    """The registers a meter sends for `value` (the inverse of decode_words; for simulators and tests of
    the inverse, never to produce an expected value of decode_words)."""
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[type_]
    raw = struct.pack(fmt, value if type_ == "float32" else int(value))
    words = [int.from_bytes(raw[i: i + 2], "big") for i in range(0, len(raw), 2)]
    return words if word_order == "high_first" else list(reversed(words))


def _hex(words: Sequence[int]) -> str:
    return " ".join(f"{w:04x}" for w in words)


def show_registers(registers: Mapping[int, int] | Sequence[int], start: int = 0) -> bytes:
    """Registers as raw bytes for an input event (`address: word ...`), to log with the bad value."""
    items = registers.items() if isinstance(registers, Mapping) else enumerate(registers, start)
    return " ".join(f"{a}:{w:04x}" for a, w in items).encode("ascii")
