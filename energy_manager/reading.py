"""A reading and its canonical encoding: the bytes that get hashed, published and anchored on chain.

Pure (no I/O, no clock, no randomness): this is consensus-critical code. The hub, `scb verify`, a proof file
checked on another machine years later and any third-party tool must all turn a reading into the same bytes,
so there is exactly one encoder (`canonical_bytes`) and one checker (`verify_reading`), and both are strict.

Canonical bytes (schema 1): the JSON object below with keys sorted, no whitespace, ASCII only, integers only::

    {"circuit":"consumption","hub":"scb-demo-hub","meter":"h1","party":"h1","power_w":420,
     "register_wh":12345,"salt":"00112233445566778899aabbccddeeff","schema":1,"seq":17,"ts_ms":1700000000123}

- `hub`, `meter`, `party`: identifiers `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}` (no escaping can ever be needed);
- `circuit`: what the register measures: generation | consumption | grid_import | grid_export;
- `ts_ms`: UTC milliseconds since the Unix epoch; `register_wh`: the meter's cumulative register in Wh;
  `power_w`: instantaneous power in W (signed: some inverters report a few negative watts at night);
- `seq`: the meter's sequence number, 1, 2, 3, ... without gaps (a gap means a reading was lost);
- `salt`: 16 random bytes as 32 lowercase hex digits. Why: the readings' digests end up public (Merkle leaves on
  chain); without a salt anyone could hash every plausible register value and recover a household's consumption.

digest = keccak256(canonical bytes), the Ethereum hash, so the contract and `MerkleProof.sol` can use it.
Integers stay below 2**53 so that JavaScript readers (mam.js consumers) parse them exactly.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from scb import safejson
from scb.errors import DataError

SCHEMA_VERSION = 1
CIRCUITS = ("generation", "consumption", "grid_import", "grid_export")
FIELDS = ("circuit", "hub", "meter", "party", "power_w", "register_wh", "salt", "schema", "seq", "ts_ms")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SALT_RE = re.compile(r"[0-9a-f]{32}")
DIGEST_RE = re.compile(r"(0x)?[0-9a-fA-F]{64}")
#: 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z: a timestamp outside is a broken clock, not a reading.
TS_MIN_MS = 946_684_800_000
TS_MAX_MS = 4_102_444_800_000
MAX_SAFE_INT = 2**53 - 1
MAX_ABS_POWER_W = 2**31 - 1
#: Largest canonical reading: every field at its longest. Anything longer is refused before parsing.
MAX_CANONICAL_BYTES = 512


class ReadingError(DataError):
    """A reading (or its canonical bytes, or its digest) is invalid; the message says which check failed."""


@dataclass(frozen=True)
class Reading:
    """One sample of one meter's register, exactly the fields that are hashed."""

    hub: str
    meter: str
    party: str
    circuit: str
    ts_ms: int
    register_wh: int
    power_w: int
    seq: int
    salt: str

    def __post_init__(self) -> None:
        _check_fields(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The canonical JSON object (as a dict); `schema` included."""
        return {
            "circuit": self.circuit,
            "hub": self.hub,
            "meter": self.meter,
            "party": self.party,
            "power_w": self.power_w,
            "register_wh": self.register_wh,
            "salt": self.salt,
            "schema": SCHEMA_VERSION,
            "seq": self.seq,
            "ts_ms": self.ts_ms,
        }

    def canonical(self) -> bytes:
        return canonical_bytes(self)

    def digest(self) -> bytes:
        return reading_digest(canonical_bytes(self))


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; `true` is not a number in a reading.
    return type(value) is int


def _check_fields(obj: Mapping[str, Any]) -> None:
    """Raise ReadingError naming the first field that breaks schema 1."""
    keys = set(obj)
    if keys != set(FIELDS):
        missing = sorted(set(FIELDS) - keys)
        extra = sorted(keys - set(FIELDS))
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise ReadingError(f"reading fields: {'; '.join(parts)}")
    if not _is_int(obj["schema"]) or obj["schema"] != SCHEMA_VERSION:
        raise ReadingError(f"reading schema must be {SCHEMA_VERSION}, not {obj['schema']!r}")
    for name in ("hub", "meter", "party"):
        value = obj[name]
        if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
            raise ReadingError(f"reading {name} must match {ID_RE.pattern}, not {value!r}")
    if obj["circuit"] not in CIRCUITS:
        raise ReadingError(f"reading circuit must be one of {', '.join(CIRCUITS)}, not {obj['circuit']!r}")
    ts = obj["ts_ms"]
    if not _is_int(ts) or not TS_MIN_MS <= ts < TS_MAX_MS:
        raise ReadingError(f"reading ts_ms must be an integer of UTC milliseconds in 2000..2099, not {ts!r}")
    reg = obj["register_wh"]
    if not _is_int(reg) or not 0 <= reg <= MAX_SAFE_INT:
        raise ReadingError(f"reading register_wh must be an integer 0..2**53-1, not {reg!r}")
    power = obj["power_w"]
    if not _is_int(power) or abs(power) > MAX_ABS_POWER_W:
        raise ReadingError(f"reading power_w must be an integer within +-(2**31-1), not {power!r}")
    seq = obj["seq"]
    if not _is_int(seq) or not 1 <= seq <= MAX_SAFE_INT:
        raise ReadingError(f"reading seq must be an integer 1..2**53-1, not {seq!r}")
    salt = obj["salt"]
    if not isinstance(salt, str) or SALT_RE.fullmatch(salt) is None:
        raise ReadingError("reading salt must be 16 bytes as 32 lowercase hex digits")


def encode_json(obj: Mapping[str, Any]) -> bytes:
    """Sorted-key compact ASCII JSON: the one serialisation used for readings and reading messages."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def canonical_bytes(reading: Reading) -> bytes:
    """The canonical bytes of a reading (what is hashed)."""
    return encode_json(reading.as_dict())


def reading_digest(canonical: bytes) -> bytes:
    """keccak256 of canonical bytes (32 bytes)."""
    return keccak(bytes(canonical))


def reading_from_obj(obj: Any) -> Reading:
    """Build a Reading from a decoded JSON object (e.g. one element of a published message), strictly."""
    if not isinstance(obj, Mapping):
        raise ReadingError("a reading must be a JSON object")
    _check_fields(obj)
    return Reading(
        hub=obj["hub"],
        meter=obj["meter"],
        party=obj["party"],
        circuit=obj["circuit"],
        ts_ms=obj["ts_ms"],
        register_wh=obj["register_wh"],
        power_w=obj["power_w"],
        seq=obj["seq"],
        salt=obj["salt"],
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ReadingError(f"duplicate key {key!r} in reading")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ReadingError(f"reading numbers must be integers, not {text}")


def _no_constant(text: str) -> Any:
    raise ReadingError(f"{text} is not a valid reading value")


def strict_json_loads(data: bytes, what: str = "reading") -> Any:
    """Parse ASCII JSON refusing duplicate keys, floats, NaN/Infinity (all legal in Python's json, not here)."""
    try:
        text = bytes(data).decode("ascii")
    except UnicodeDecodeError:
        raise ReadingError(f"{what} bytes are not ASCII") from None
    try:
        safejson.check_depth(text)
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_float=_no_float, parse_constant=_no_constant
        )
    except safejson.JsonTooDeep:
        raise ReadingError(f"{what} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ReadingError(f"{what} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise ReadingError(f"{what} is nested too deeply") from None


def parse_canonical(data: bytes) -> Reading:
    """Parse canonical bytes; refuse anything that is not exactly the canonical form of a valid reading.

    Why so strict: two different byte strings for the same reading would have two digests, and a verifier could
    be shown one while the chain holds the other.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ReadingError("canonical reading must be bytes")
    data = bytes(data)
    if len(data) > MAX_CANONICAL_BYTES:
        raise ReadingError(f"canonical reading is {len(data)} bytes, longer than any valid reading")
    reading = reading_from_obj(strict_json_loads(data))
    if canonical_bytes(reading) != data:
        raise ReadingError("reading is not in canonical form (sorted keys, no whitespace, no escapes)")
    return reading


def parse_digest(digest: bytes | str) -> bytes:
    """A digest as 32 bytes, from bytes or hex (with or without 0x)."""
    if isinstance(digest, (bytes, bytearray, memoryview)):
        raw = bytes(digest)
        if len(raw) != 32:
            raise ReadingError(f"a digest has 32 bytes, not {len(raw)}")
        return raw
    if isinstance(digest, str) and DIGEST_RE.fullmatch(digest):
        return bytes.fromhex(digest.removeprefix("0x"))
    raise ReadingError("a digest is 32 bytes or 64 hex digits (optionally 0x-prefixed)")


def verify_reading(canonical: bytes, digest: bytes | str) -> Reading:
    """The one check of a stored or published reading: canonical form, schema, and digest.

    Returns the reading; raises ReadingError saying which step failed. `scb verify` and the settlement job use
    this, so every path that trusts a reading trusts it for the same reasons.
    """
    expected = parse_digest(digest)
    reading = parse_canonical(canonical)
    actual = reading_digest(canonical)
    if actual != expected:
        raise ReadingError(f"digest mismatch: the bytes hash to 0x{actual.hex()}, not 0x{expected.hex()}")
    return reading
