"""Malformed and mutated payloads raise MamError subclasses only (never IndexError, RecursionError...)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mam_client.mam import InvalidMessage, MamError, create_channel, create_message, parse_message

SEED = "MALFORMED" * 9
ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_state = create_channel(SEED, "restricted", side_key="KEY", security=1)
GOOD = create_message(_state, "HELLOWORLD")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=3000))
def test_random_payloads(payload: str) -> None:
    try:
        parse_message(payload, GOOD.root, "KEY")
    except InvalidMessage:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_payloads(data: st.DataObject) -> None:
    payload = GOOD.payload
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(payload) - 1))
    ch = data.draw(st.sampled_from(ALPHABET))
    if kind == "flip":
        mutated = payload[:pos] + ch + payload[pos + 1 :]
    elif kind == "truncate":
        mutated = payload[:pos]
    elif kind == "insert":
        mutated = payload[:pos] + ch + payload[pos:]
    else:
        mutated = payload[:pos] + payload[pos + 1 :]
    try:
        result = parse_message(mutated, GOOD.root, "KEY")
    except InvalidMessage:
        return
    # Only changes after the authenticated part may pass (trailing data and padding are not authenticated).
    assert result.message == "HELLOWORLD"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100), st.text(max_size=100), st.one_of(st.none(), st.text(max_size=100)))
def test_garbage_arguments(payload: str, root: str, key: str | None) -> None:
    try:
        parse_message(payload, root, key)
    except MamError:
        pass
