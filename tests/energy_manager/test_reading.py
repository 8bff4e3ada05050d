"""Canonical encoding and verification of readings, against golden files made by an independent implementation
(hand-written JSON strings hashed with js-sha3; see golden/make_golden.js)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_manager.reading import (
    CIRCUITS,
    Reading,
    ReadingError,
    canonical_bytes,
    parse_canonical,
    reading_digest,
    verify_reading,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
VALID = json.loads((GOLDEN / "readings-valid.json").read_text(encoding="utf-8"))
INVALID = json.loads((GOLDEN / "readings-invalid.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_golden_valid_reading_encodes_and_verifies(case: dict) -> None:
    fields = {k: v for k, v in case["fields"].items() if k != "schema"}
    reading = Reading(**fields)
    expected = case["canonical"].encode("ascii")
    assert canonical_bytes(reading) == expected
    assert "0x" + reading.digest().hex() == case["digest"]
    assert verify_reading(expected, case["digest"]) == reading
    assert parse_canonical(expected) == reading


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_golden_invalid_reading_is_refused_for_the_right_reason(case: dict) -> None:
    with pytest.raises(ReadingError) as err:
        verify_reading(case["canonical"].encode("utf-8"), case["digest"])
    assert case["error"] in str(err.value)


def test_digest_accepts_bytes_and_hex_forms_but_not_garbage() -> None:
    case = VALID[0]
    data = case["canonical"].encode()
    digest = bytes.fromhex(case["digest"][2:])
    verify_reading(data, digest)
    verify_reading(data, case["digest"][2:])
    verify_reading(data, case["digest"].upper().replace("0X", "0x"))
    for bad in (digest[:31], "0x1234", "zz" * 32, None):
        with pytest.raises(ReadingError):
            verify_reading(data, bad)  # type: ignore[arg-type]


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
readings = st.builds(
    Reading,
    hub=ids,
    meter=ids,
    party=ids,
    circuit=st.sampled_from(CIRCUITS),
    ts_ms=st.integers(946_684_800_000, 4_102_444_799_999),
    register_wh=st.integers(0, 2**53 - 1),
    power_w=st.integers(-(2**31 - 1), 2**31 - 1),
    seq=st.integers(1, 2**53 - 1),
    salt=st.binary(min_size=16, max_size=16).map(bytes.hex),
)


@settings(max_examples=300, deadline=None)
@given(readings)
def test_any_valid_reading_round_trips(reading: Reading) -> None:
    data = canonical_bytes(reading)
    assert data.isascii() and b" " not in data
    keys = list(json.loads(data))
    assert keys == sorted(keys)
    assert verify_reading(data, reading_digest(data)) == reading


@settings(max_examples=300, deadline=None)
@given(readings, st.data())
def test_any_changed_byte_is_detected(reading: Reading, data: st.DataObject) -> None:
    original = canonical_bytes(reading)
    digest = reading_digest(original)
    i = data.draw(st.integers(0, len(original) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[i]))
    tampered = original[:i] + bytes([new]) + original[i + 1:]
    with pytest.raises(ReadingError):
        verify_reading(tampered, digest)


def test_invalid_fields_are_refused_when_building_a_reading() -> None:
    good = {k: v for k, v in VALID[0]["fields"].items() if k != "schema"}
    for change in ({"seq": 0}, {"register_wh": -1}, {"salt": "00"}, {"circuit": "battery"}, {"meter": ""},
                   {"power_w": True}, {"ts_ms": 1.5e12}):
        with pytest.raises(ReadingError):
            Reading(**{**good, **change})
