"""Bounded-depth JSON: deep documents are refused before the recursive decoder sees them."""
from __future__ import annotations

import json
import sys

import pytest

from scb import safejson


def test_ordinary_documents_decode_like_json() -> None:
    doc = {"a": [1, {"b": "[[[[\\\"]]"}], "c": "{"}
    text = json.dumps(doc)
    assert safejson.loads(text) == doc
    assert safejson.loads(text.encode()) == doc


def test_deep_nesting_is_refused_even_with_a_high_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py-evm does at import
    try:
        with pytest.raises(safejson.JsonTooDeep):
            safejson.loads("[" * 100_000 + "]" * 100_000)
        with pytest.raises(safejson.JsonTooDeep):
            safejson.loads('{"a":' * 70 + "1" + "}" * 70)
    finally:
        sys.setrecursionlimit(old)


def test_brackets_inside_strings_do_not_count() -> None:
    assert safejson.loads(json.dumps(["[" * 500])) == ["[" * 500]


@pytest.mark.parametrize("bad", ["{", "[1,", "nope", ""])
def test_malformed_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        safejson.loads(bad)
