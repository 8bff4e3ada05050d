"""Register maps as data: the shipped profiles (`profiles/<name>.toml`) and a user's `custom` table.

A profile file holds a meter model's register map as its manufacturer documents it: defaults for the whole map
(`function`, `type`, `word_order`, `scale`) and one `[values.<name>]` table per device value with the protocol
`address` and, where the manual numbers registers the 3xxxx/4xxxx way, that `register` number too - the loader
checks that both agree, so a typo in a file is caught by the tests rather than by a household's bill. The same
validation reads `profile = "custom"` tables from scb.toml, with errors naming the configuration key.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from energy_manager.modbus.decode import FUNCTIONS, TYPES, WORD_ORDERS, Block, Field, plan
from scb import settings as check
from scb.errors import ConfigError

PROFILE_DIR = Path(__file__).with_name("profiles")
#: Profiles with a register map file. "sunspec" is discovered on the device, "custom" comes from scb.toml.
SHIPPED = ("sdm120", "sdm230", "sdm630", "em24", "em340")
PROFILES = (*SHIPPED, "sunspec", "custom")
#: The first register number of each function in the 3xxxx/4xxxx numbering (register = base + address).
REGISTER_BASE = {"input": 30001, "holding": 40001}
FIELD_KEYS = ("address", "register", "function", "type", "word_order", "scale", "unit", "description")
UNITS = {"_wh": "Wh", "_w": "W", "_v": "V", "_a": "A", "_hz": "Hz"}


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    source: str
    fields: tuple[Field, ...]

    @property
    def blocks(self) -> list[Block]:
        return plan(self.fields)


def _unit(name: str) -> str:
    return next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")


def parse_fields(key: str, values: Any, defaults: Mapping[str, Any] | None = None) -> tuple[Field, ...]:
    """The `[<key>.<value name>]` tables as Fields; ConfigError naming `key.<name>.<setting>` on any problem."""
    table = check.table(key, values)
    if not table:
        raise ConfigError(f"[{key}] must name at least one value (e.g. import_wh = {{ address = 72 }})")
    base = {"function": "input", "type": "float32", "word_order": "high_first", "scale": 1.0, **(defaults or {})}
    fields = []
    for name, spec in table.items():
        section = f"{key}.{name}"
        if not _is_name(name):
            raise ConfigError(f"value name {check.show(name)} in [{key}] must be letters, digits and '_'")
        raw = check.table(section, spec)
        check.known_keys(section, raw, FIELD_KEYS)
        s = check.Section(section, {**base, **raw})
        if "address" not in raw:
            raise ConfigError(f"{section}.address is missing (the register's protocol address, 0-based)")
        function = s.choice("function", FUNCTIONS)
        type_ = s.choice("type", tuple(TYPES))
        address = s.integer("address", 0, 0xFFFF - TYPES[type_] + 1)
        if "register" in raw:
            register = s.integer("register", 1, 499_999)
            if register - REGISTER_BASE[function] != address:
                raise ConfigError(f"{section}: register {register} is address {register - REGISTER_BASE[function]} "
                                  f"for function {function}, not {address}")
        unit = s.string("unit") if "unit" in raw else _unit(name)
        fields.append(Field(name=name, address=address, function=function, type=type_,
                            word_order=s.choice("word_order", WORD_ORDERS),
                            scale=s.number("scale", -1e9, 1e9), unit=unit))
    return tuple(fields)


def _is_name(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c == "_" for c in name) and len(name) <= 64


@cache
def load_profile(name: str) -> Profile:
    """A shipped profile by name (ConfigError for one that is not shipped)."""
    if name not in SHIPPED:
        raise ConfigError(f"no register map for profile {name!r}; shipped: {', '.join(SHIPPED)}")
    path = PROFILE_DIR / f"{name}.toml"
    with path.open("rb") as f:
        data = tomllib.load(f)
    key = f"modbus profile {name}"
    defaults = {k: data[k] for k in ("function", "type", "word_order", "scale") if k in data}
    return Profile(name=name, model=str(data["model"]), source=str(data["source"]),
                   fields=parse_fields(f"{key}: values", data["values"], defaults))


def custom_profile(key: str, registers: Any) -> Profile:
    """`profile = "custom"`: the device's own `registers` table from scb.toml."""
    return Profile(name="custom", model="custom register table", source=f"[{key}]",
                   fields=parse_fields(key, registers))
