"""JSON from untrusted sources (HTTP bodies, proof files, meter lines) with a bound on nesting depth.

Why: Python's json decoder recurses in C once per nesting level and is only stopped by the interpreter's
recursion limit. Libraries may raise that limit (py-evm sets it to 100000 at import), and a request of
100 000 '[' then overflows a thread's C stack and kills the process with a segmentation fault. Nothing SCB
accepts is nested more than a few levels, so depth is checked with a linear scan before decoding.
"""
from __future__ import annotations

import json
import re
from typing import Any

from scb.errors import DataError

#: Deepest nesting accepted. SCB's own documents (proof files, API bodies, IRI commands) stay below 10.
MAX_DEPTH = 64


class JsonTooDeep(DataError, ValueError):
    """The document nests arrays/objects deeper than allowed."""


#: A JSON string with its escapes. Why regular expressions: strings are removed and the other bytes but brackets
#: deleted in C, so Python walks the brackets alone; a Python loop over every byte took ~0.1 s per MB (a fleet
#: upload is a few MB).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_depth(text: str | bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonTooDeep if brackets outside strings nest deeper than `max_depth` (linear, no recursion).

    An unterminated string counts as not a string (its brackets count): such a document is not JSON anyway."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads after the depth check; raises ValueError (JSONDecodeError or JsonTooDeep) for bad input."""
    check_depth(text, max_depth)
    return json.loads(text)
