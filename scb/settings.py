"""The checks every settings module applies to its configuration values (one helper, not one copy per component).

A configuration value comes from TOML (scb.toml) or from an `SCB_<SECTION>__<KEY>` environment variable parsed as
a TOML value, so it already has a type: these checks never coerce. Why not coerce: `int(9.7)` is 9 and
`bool("false")` is True; a hub that runs on a silently changed setting bills, publishes or listens differently
from what its operator wrote. Every error is a `ConfigError` that names the full key (`section.key`), shows the
value as it would be written in TOML, and says what is expected:

    iota.mwm must be an integer from 1 to 27, not 9.7

Use the functions with a full dotted key, or `Section` (from `read_section`) to name keys relative to a table.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scb.errors import ConfigError

if TYPE_CHECKING:
    from scb.config import Config

#: TCP ports a setting may name. Why not 0: it means "any free port", which no client could then find.
PORT_RANGE = (1, 65535)
#: Longest value shown in an error. Why: a whole table pasted into one line hides the key it is about.
SHOW_MAX = 80


def show(value: Any) -> str:
    """The value as it would be written in scb.toml (strings quoted, booleans lower case), shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    elif isinstance(value, Mapping):
        text = "a table"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= SHOW_MAX else text[:SHOW_MAX - 3] + "..."


def fail(key: str, expected: str, value: Any) -> ConfigError:
    """The one error shape: `<key> must be <expected>, not <value>`."""
    return ConfigError(f"{key} must be {expected}, not {show(value)}")


def _bound(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return str(x) if isinstance(x, int) else repr(x)


def _range_text(low: float | None, high: float | None, low_exclusive: bool = False) -> str:
    if low is not None and high is not None and not low_exclusive:
        return f" from {_bound(low)} to {_bound(high)}"
    parts = []
    if low is not None:
        parts.append(f"greater than {_bound(low)}" if low_exclusive else f"at least {_bound(low)}")
    if high is not None:
        parts.append(f"at most {_bound(high)}")
    return (" " + " and ".join(parts)) if parts else ""


def integer(key: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """A TOML integer within [low, high]. A float (9.7, or 9.0) or a boolean is an error, not rounded."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or (low is not None and value < low) or (high is not None and value > high):
        raise fail(key, "an integer" + _range_text(low, high), value)
    return value


def number(key: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_exclusive: bool = False) -> float:
    """A finite TOML number (integer or float) within [low, high] (or (low, high] with `low_exclusive`)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_exclusive else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise fail(key, "a number" + _range_text(low, high, low_exclusive), value)
    return float(value)


def boolean(key: str, value: Any) -> bool:
    """`true` or `false`. Why no "yes"/1: `SCB_X__Y=false` already parses as a TOML boolean."""
    if not isinstance(value, bool):
        raise fail(key, "true or false", value)
    return value


def choice(key: str, value: Any, choices: Sequence[str]) -> str:
    """One of `choices`, exactly (case matters)."""
    if not isinstance(value, str) or value not in choices:
        raise fail(key, "one of " + ", ".join(json.dumps(c) for c in choices), value)
    return value


def string(key: str, value: Any, *, pattern: re.Pattern[str] | None = None, expected: str = "a string",
           allow_empty: bool = True, max_length: int | None = None) -> str:
    """A TOML string; with `pattern` it must match it whole (`expected` then says what it describes)."""
    if not isinstance(value, str) or (not allow_empty and not value) \
            or (max_length is not None and len(value) > max_length) \
            or (pattern is not None and value and pattern.fullmatch(value) is None):
        raise fail(key, expected, value)
    return value


def host(key: str, value: Any) -> str:
    """A host name or address to listen on or connect to (surrounding blanks removed)."""
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise fail(key, "a host name or address", value)
    return value.strip()


def port(key: str, value: Any) -> int:
    """A TCP port, 1..65535."""
    return integer(key, value, *PORT_RANGE)


def url(key: str, value: Any, schemes: Sequence[str] = ("http", "https"), *, allow_empty: bool = False) -> str:
    """A URL with one of `schemes` and a host (`http://10.0.0.5:14265`); "" only with `allow_empty`."""
    expected = " or ".join(schemes) + " URL" + (' (or "" for the default)' if allow_empty else "")
    expected = ("an " if expected[0] in "aeiouh" else "a ") + expected
    if not isinstance(value, str):
        raise fail(key, expected, value)
    text = value.strip()
    if not text and allow_empty:
        return ""
    scheme, sep, rest = text.partition("://")
    hostpart = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if not sep or scheme.lower() not in schemes or not hostpart or hostpart.startswith(":") \
            or any(c.isspace() for c in text):
        raise fail(key, expected, value)
    return text


def path(key: str, value: Any, *, allow_empty: bool = False) -> Path | None:
    """A file or directory path (`~` expanded); "" gives None with `allow_empty` (the component's default)."""
    if not isinstance(value, str) or (not value and not allow_empty) or "\0" in value:
        raise fail(key, "a path" + (' (or "" for the default)' if allow_empty else ""), value)
    return Path(value).expanduser() if value else None


def string_list(key: str, value: Any, *, item: Callable[[str, Any], str] | None = None, allow_empty: bool = True,
                unique: bool = False, expected: str = "a list of strings") -> list[str]:
    """A TOML array of strings; `item(key[i], value)` checks each element (and may normalise it)."""
    if not isinstance(value, list) or (not allow_empty and not value):
        raise fail(key, expected, value)
    out = []
    for i, element in enumerate(value):
        if not isinstance(element, str):
            raise fail(f"{key}[{i}]", "a string", element)
        out.append(item(f"{key}[{i}]", element) if item else element)
    if unique and len(set(out)) != len(out):
        duplicates = sorted({x for x in out if out.count(x) > 1})
        raise ConfigError(f"{key} must not repeat an entry, not {show(value)} ({', '.join(duplicates)} repeated)")
    return out


def integer_list(key: str, value: Any, low: int | None = None, high: int | None = None) -> list[int]:
    """A TOML array of integers, each within [low, high]."""
    if not isinstance(value, list):
        raise fail(key, "a list of integers" + _range_text(low, high), value)
    return [integer(f"{key}[{i}]", element, low, high) for i, element in enumerate(value)]


def table(key: str, value: Any) -> dict[str, Any]:
    """A TOML table (`[key]` or an inline `{...}`)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table, not {show(value)}")
    return dict(value)


def known_keys(key: str, value: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse keys of table `key` that are not in `known`: a typo must not be a silently ignored setting."""
    names = sorted(known)
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(f'{key}.{k}' for k in unknown)}; known: {', '.join(names)}")


@dataclass(frozen=True)
class Section:
    """A table's values and its dotted name, so that each check names `name.key` without repeating it."""

    name: str
    values: Mapping[str, Any]

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def integer(self, key: str, low: int | None = None, high: int | None = None) -> int:
        return integer(self.key(key), self.values[key], low, high)

    def number(self, key: str, low: float | None = None, high: float | None = None, *,
               low_exclusive: bool = False) -> float:
        return number(self.key(key), self.values[key], low, high, low_exclusive=low_exclusive)

    def boolean(self, key: str) -> bool:
        return boolean(self.key(key), self.values[key])

    def choice(self, key: str, choices: Sequence[str]) -> str:
        return choice(self.key(key), self.values[key], choices)

    def string(self, key: str, **kw: Any) -> str:
        return string(self.key(key), self.values[key], **kw)

    def host(self, key: str) -> str:
        return host(self.key(key), self.values[key])

    def port(self, key: str) -> int:
        return port(self.key(key), self.values[key])

    def url(self, key: str, schemes: Sequence[str] = ("http", "https"), *, allow_empty: bool = False) -> str:
        return url(self.key(key), self.values[key], schemes, allow_empty=allow_empty)

    def path(self, key: str, *, allow_empty: bool = False) -> Path | None:
        return path(self.key(key), self.values[key], allow_empty=allow_empty)

    def string_list(self, key: str, **kw: Any) -> list[str]:
        return string_list(self.key(key), self.values[key], **kw)

    def integer_list(self, key: str, low: int | None = None, high: int | None = None) -> list[int]:
        return integer_list(self.key(key), self.values[key], low, high)

    def table(self, key: str) -> dict[str, Any]:
        return table(self.key(key), self.values[key])


def read_section(config: "Config", name: str, defaults: Mapping[str, Any]) -> Section:
    """`config.section(name, defaults)` (unknown keys refused) as a `Section` for the checks above."""
    return Section(name, config.section(name, defaults))
