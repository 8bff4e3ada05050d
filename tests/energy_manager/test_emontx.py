"""The emonTx line parser: known lines, and a fuzz of well over 10,000 random and mutated lines."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_manager.emontx import KEY_RE, LINE_ERROR_KINDS, MAX_LINE_BYTES, LineError, parse_line

EXAMPLE = b"MSG:12,Vrms:231.2,P1:420,P2:0,P3:-3,P4:0,E1:12345,E2:0,E3:0,E4:0,pulse:0\r\n"


def test_emontx_frame() -> None:
    values = parse_line(EXAMPLE)
    assert values["MSG"] == 12 and values["Vrms"] == 231.2 and values["P3"] == -3 and values["E1"] == 12345
    assert len(values) == 11


def test_lf_only_and_spaces_around_fields() -> None:
    assert parse_line(b"P1: 420 , E1:7\n") == {"P1": 420.0, "E1": 7.0}


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"\r\n", "empty"),
        (b"", "empty"),
        (b"P1:420,E1", "malformed"),
        (b"P1:420,,E1:3", "malformed"),
        (b"1P:420", "malformed"),
        (b"P1:abc", "non_numeric"),
        (b"P1:nan", "non_numeric"),
        (b"P1:inf", "non_numeric"),
        (b"P1:1e5", "non_numeric"),
        (b"P1:", "non_numeric"),
        (b"E1:1" + b"0" * 20, "non_numeric"),
        (b"P1:1,P1:2", "duplicate_key"),
        (b"P1:4\xff20", "not_ascii"),
        (b"P1:4\x0020", "not_ascii"),
        (b"P1:" + b"1" * MAX_LINE_BYTES, "too_long"),
    ],
)
def test_bad_lines_say_what_is_wrong(line: bytes, kind: str) -> None:
    with pytest.raises(LineError) as err:
        parse_line(line)
    assert err.value.kind == kind


def _check(line: bytes) -> str:
    """Parse; return 'ok' or the error kind. Anything else escaping is a test failure."""
    try:
        values = parse_line(line)
    except LineError as exc:
        assert exc.kind in LINE_ERROR_KINDS
        return exc.kind
    for key, value in values.items():
        assert KEY_RE.fullmatch(key)
        assert isinstance(value, float) and math.isfinite(value)
    return "ok"


def _mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        i = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a bit
            j = rng.randrange(len(data))
            data[j] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate (a line cut by a reconnect)
            del data[i:]
        elif op == 2:  # drop a chunk
            del data[i:i + rng.randint(1, 8)]
        elif op == 3:  # insert random bytes
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 4:  # insert a separator
            data[i:i] = rng.choice([b",", b":", b",,", b"::", b"\r", b"-", b".", b"e", b" "])
        elif op == 5:  # duplicate a chunk (two lines run together)
            data[i:i] = data[rng.randrange(len(data) + 1):][:rng.randint(1, 30)]
        elif op == 6 and data:  # replace a digit
            j = rng.randrange(len(data))
            data[j] = rng.choice(b"0123456789abcxyz+-.")
        else:  # swap two halves
            data = data[i:] + data[:i]
    return bytes(data)


def _valid_line(rng: random.Random) -> bytes:
    fields = [f"MSG:{rng.randint(0, 10**6)}", f"Vrms:{rng.uniform(200, 250):.2f}"]
    for n in range(1, rng.randint(2, 5)):
        fields.append(f"P{n}:{rng.randint(-50, 5000)}")
        fields.append(f"E{n}:{rng.randint(0, 10**8)}")
    rng.shuffle(fields)
    return (",".join(fields) + rng.choice(["\r\n", "\n", ""])).encode()


def test_fuzz_twelve_thousand_random_and_mutated_lines() -> None:
    rng = random.Random(20240601)
    outcomes: dict[str, int] = {}
    total = 0
    for i in range(12_000):
        kind = i % 4
        if kind == 0:
            line = _valid_line(rng)
        elif kind == 1:
            line = _mutate(rng, _valid_line(rng))
        elif kind == 2:
            line = bytes(rng.randrange(256) for _ in range(rng.randint(0, 120)))
        else:
            line = "".join(rng.choice("PEVMSGrms0123456789:,.-+ \t\r") for _ in range(rng.randint(0, 90))).encode()
        outcome = _check(line)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        total += 1
    assert total >= 10_000
    # the mix exercised both sides: most valid lines parse, and several kinds of error occurred
    assert outcomes["ok"] >= 3_000
    assert len([k for k in outcomes if k != "ok"]) >= 4


@settings(max_examples=3_000, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(line: bytes) -> None:
    _check(line)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True),
                       st.integers(-10**9, 10**9), min_size=1, max_size=20))
def test_every_well_formed_frame_parses_to_its_values(frame: dict[str, int]) -> None:
    line = ",".join(f"{k}:{v}" for k, v in frame.items()).encode() + b"\r\n"
    assert parse_line(line) == {k: float(v) for k, v in frame.items()}
