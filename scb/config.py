"""Configuration: one TOML file plus `SCB_*` environment overrides, on top of embedded defaults.

Where a value comes from, lowest to highest precedence:
1. the defaults each component declares (its own `*_config` module) - the hub runs with no file at all;
2. the TOML file: `--config PATH`, else `$SCB_CONFIG`, else `scb.toml` in the current directory if present;
3. environment variables `SCB_<SECTION>__<KEY>` (double underscore between levels), e.g.
   `SCB_IOTA__NODE_URL=http://10.0.0.5:14265` or `SCB_ENERGY__SAMPLE_INTERVAL_S=5`. Values are parsed as
   TOML values when they parse (numbers, booleans, arrays), else taken as strings.
`$SCB_DATA_DIR` overrides `hub.data_dir`.

Components read their section through small typed views (e.g. `mam_client.settings`), which validate with the
checks of `scb.settings` and raise `ConfigError` naming the offending key. Each settings module exports `SECTIONS`,
the top-level sections it owns (this module owns "hub" and "database"); `Config.check_sections` refuses any other
section, so a typo such as `[energi]` or a stray `SCB_MQTT__URL` is an error rather than a setting nobody reads.
See docs/configuration.md.
"""
from __future__ import annotations

import copy
import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scb import settings as check
from scb.errors import ConfigError

ENV_PREFIX = "SCB_"
DEFAULT_FILE = "scb.toml"

#: The top-level sections this module reads; every component's settings module exports its own `SECTIONS`.
SECTIONS: tuple[str, ...] = ("hub", "database")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: Settings shared by every process. Component sections add their own defaults through `section(...)`.
HUB_DEFAULTS: dict[str, Any] = {
    "id": "scb-demo-hub",
    "data_dir": "data",
    "log_level": "INFO",
}
DATABASE_DEFAULTS: dict[str, Any] = {
    # empty: SQLite file <data_dir>/scb.sqlite3
    "url": "",
    # SQLite durability: FULL makes a committed reading survive a power cut (WAL mode is always used).
    "synchronous": "FULL",
    # SQLite: how long a writer waits for another process's lock before the attempt fails (and is retried
    # with backoff by the failure policy, scb.loop)
    "busy_timeout_s": 30.0,
    # SQLite: the largest the database file may grow, in MiB (0: no limit but the disk). Past it, writes fail as
    # on a full disk and are retried; for an SD card partition shared with other data.
    "max_size_mb": 0,
    # PostgreSQL: a file (mode 0600) holding the role's password, read at each connect; never put the password in
    # `url`, which is shown in logs and status (docs/database.md)
    "password_file": "",
}


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Config:
    """The merged configuration tree (file + environment), before component defaults are applied."""

    data: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    #: top-level section -> the environment variables that set something in it (for error messages)
    env_origins: dict[str, list[str]] = field(default_factory=dict)
    #: top-level sections (and keys) that the file itself holds
    file_sections: frozenset[str] = frozenset()

    def section(self, name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Return section `name` (dotted for nested tables) merged over `defaults`.

        Unknown keys are refused so that a typo in scb.toml is an error, not a silently ignored setting.
        """
        node: Any = self.data
        for part in name.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        if not isinstance(node, Mapping):
            raise ConfigError(f"[{name}] must be a table in {self.where}")
        unknown = sorted(set(node) - set(defaults))
        if unknown:
            raise ConfigError(
                f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(f'{name}.{k}' for k in unknown)} "
                f"in {self.where}; known: {', '.join(sorted(defaults))}"
            )
        return _deep_merge(dict(defaults), node)

    def table(self, name: str) -> dict[str, Any]:
        """Return a free-form table (e.g. the channels map) without key checking; {} when absent."""
        node: Any = self.data
        for part in name.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        if not isinstance(node, Mapping):
            raise ConfigError(f"[{name}] must be a table in {self.where}")
        return copy.deepcopy(dict(node))

    @property
    def where(self) -> str:
        return str(self.source) if self.source else "the configuration"

    def origin(self, section: str) -> str:
        """Where top-level `section` was set, as a phrase: "in FILE", "set by environment variable X", or both."""
        places = []
        if section in self.file_sections and self.source is not None:
            places.append(f"in {self.source}")
        env = self.env_origins.get(section, [])
        if env:
            places.append(f"set by environment variable{'s' if len(env) > 1 else ''} {', '.join(env)}")
        return " and ".join(places) or f"in {self.where}"

    def check_sections(self, known: Iterable[str]) -> None:
        """Refuse top-level sections no component reads (`known`: every component's SECTIONS).

        Why: `Config.section` refuses unknown keys inside a section, but a whole section nobody reads, such as a
        misspelt `[energi]`, would otherwise be ignored silently and the hub would run on defaults the operator
        meant to change. The error names the section, where it was set, and the closest known section.
        """
        names = sorted(set(known))
        problems = []
        for name in sorted(set(self.data) - set(names)):
            kind = f"section [{name}]" if isinstance(self.data[name], Mapping) else f"top-level setting {name}"
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"did you mean [{close[0]}]?" if close else f"known sections: {', '.join(names)}"
            problems.append(f"unknown {kind} {self.origin(name)} ({hint})")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def hub(self) -> dict[str, Any]:
        raw = check.read_section(self, "hub", HUB_DEFAULTS)
        return {
            "id": raw.string("id", allow_empty=False, max_length=64, expected="a hub id of 1 to 64 characters"),
            "data_dir": raw.path("data_dir"),
            "log_level": _upper_choice("hub.log_level", raw["log_level"], LOG_LEVELS),
        }

    @property
    def data_dir(self) -> Path:
        return Path(self.hub["data_dir"]).resolve()

    @property
    def database_url(self) -> str:
        raw = check.read_section(self, "database", DATABASE_DEFAULTS)
        url = raw.string("url", expected='an SQLAlchemy database URL (or "" for <data_dir>/scb.sqlite3)')
        password_file = raw.string("password_file", expected="the path of a 0600 file holding the password")
        if password_file and not url.startswith("postgresql"):
            raise ConfigError("database.password_file is for a PostgreSQL database.url "
                              "(postgresql+psycopg://ROLE@HOST/DATABASE); SQLite has no password")
        if password_file:
            # carried in the URL as SCB's own query parameter, so that every engine (make_engine) and every
            # `--url` finds it; scb.db strips it before connecting
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                parsed = make_url(url)
            except ArgumentError:
                raise ConfigError("database.url: not an SQLAlchemy database URL "
                                  "(e.g. postgresql+psycopg://scb@localhost/scb)") from None
            path = str(Path(password_file).expanduser().resolve())
            return parsed.update_query_dict({"password_file": path}).render_as_string(hide_password=False)
        return url or f"sqlite:///{self.data_dir / 'scb.sqlite3'}"

    @property
    def sqlite_busy_timeout_ms(self) -> int:
        raw = check.read_section(self, "database", DATABASE_DEFAULTS)
        return round(raw.number("busy_timeout_s", 0.001, 3600) * 1000)

    @property
    def sqlite_max_size_mb(self) -> int:
        return check.read_section(self, "database", DATABASE_DEFAULTS).integer("max_size_mb", 0, 1_000_000)

    @property
    def sqlite_synchronous(self) -> str:
        value = self.section("database", DATABASE_DEFAULTS)["synchronous"]
        return _upper_choice("database.synchronous", value, SYNCHRONOUS)


def _upper_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of `choices` in any letter case (SQLite's pragmas and logging levels are case-blind)."""
    if isinstance(value, str) and value.upper() in choices:
        return value.upper()
    raise check.fail(key, "one of " + ", ".join(choices), value)


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration from `path` (or the default places) and the environment."""
    env = os.environ if environ is None else environ
    source: Path | None = None
    data: dict[str, Any] = {}
    env_origins: dict[str, list[str]] = {}
    candidate = path or env.get(f"{ENV_PREFIX}CONFIG")
    if candidate:
        source = Path(candidate)
        if not source.is_file():
            raise ConfigError(f"configuration file {source} does not exist")
    elif Path(DEFAULT_FILE).is_file():
        source = Path(DEFAULT_FILE)
    if source is not None:
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source} cannot be read: {exc}") from None
    file_sections = frozenset(data)
    for key, raw in sorted(env.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__")]
        if any(not p for p in parts):
            raise ConfigError(f"environment variable {key} has an empty section or key")
        node = data
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment variable {key} overrides a value that is not a table")
            node = nxt
        node[parts[-1]] = _parse_env_value(raw)
        env_origins.setdefault(parts[0], []).append(key)
    if env.get(f"{ENV_PREFIX}DATA_DIR"):
        data.setdefault("hub", {})["data_dir"] = env[f"{ENV_PREFIX}DATA_DIR"]
        env_origins.setdefault("hub", []).append(f"{ENV_PREFIX}DATA_DIR")
    return Config(data=data, source=source, env_origins=env_origins, file_sections=file_sections)
