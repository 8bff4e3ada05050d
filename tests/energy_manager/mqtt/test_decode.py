"""decode() on its own (pure, no broker): paths, scales, timestamps, and that any payload gives values or a
MessageError - never another exception, because paho's thread must never die of a meter's message."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_manager.drivers import mqtt
from energy_manager.drivers.mqtt import MessageError, TimeSpec, TopicSpec, ValueSpec, decode

SPEC = TopicSpec("t", {"power_w": ValueSpec(("ENERGY", "Power", "1"), Decimal(1)),
                       "import_wh": ValueSpec(("ENERGY", "Total"), Decimal(1000))},
                 TimeSpec(("ts",), "unix", "UTC"))


def test_list_index_and_exact_scale() -> None:
    values, ts = decode(b'{"ENERGY": {"Power": [10, 25.5], "Total": 0.07}, "ts": 1750000000.25}', SPEC)
    assert values == {"power_w": 25.5, "import_wh": 70.0} and ts == 1_750_000_000_250


@pytest.mark.parametrize(("payload", "kind"), [
    (b'{"ENERGY": {"Power": [10], "Total": 1}}', "missing_path"),  # index beyond the list
    (b'{"ENERGY": {"Power": {"1": [3]}, "Total": 1}}', "non_numeric"),  # a list where a number should be
    (b'{"ENERGY": {"Power": [1, 2], "Total": 1e400}}', "non_numeric"),  # 1e400 is a Decimal, beyond 10**15
    (b'{"ENERGY": {"Power": [1, 2], "Total": -Infinity}}', "bad_json"),
    (b'{"ENERGY": {"Power": [1, 2], "Total": 1}, "ts": -5}', "bad_time"),
    (b'{"ENERGY": {"Power": [1, 2], "Total": 1}, "ts": "soon"}', "bad_time"),
    (b"[" * 100 + b"]" * 100, "bad_json"),
    (b'{"pad": "' + b"x" * mqtt.MAX_PAYLOAD_BYTES + b'"}', "bad_json"),
])
def test_bad_payloads(payload: bytes, kind: str) -> None:
    with pytest.raises(MessageError) as err:
        decode(payload, SPEC)
    assert err.value.kind == kind


def test_a_message_without_its_timestamp_has_none() -> None:
    assert decode(b'{"ENERGY": {"Power": [1, 2], "Total": 1}}', SPEC) == ({"power_w": 2.0, "import_wh": 1000.0},
                                                                          None)


def test_a_digit_on_an_object_is_a_key() -> None:
    spec = TopicSpec("t", {"p": ValueSpec(("Power", "1"), Decimal(1))}, None)
    assert decode(json.dumps({"Power": {"1": 3}}).encode(), spec) == ({"p": 3.0}, None)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                  ["ENERGY", "Power", "Total", "ts", "1"]), c, max_size=4),
                              max_leaves=20).map(lambda d: json.dumps(d).encode())))
def test_any_payload_gives_values_or_a_message_error(payload: bytes) -> None:
    try:
        values, _ = decode(payload, SPEC)
    except MessageError as exc:
        assert exc.kind in mqtt.MESSAGE_ERROR_KINDS
    else:
        assert set(values) == {"power_w", "import_wh"}
