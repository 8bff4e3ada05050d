"""Typed view of the IOTA and MAM configuration ([iota], [mam], [mam.channels.NAME]).

Embedded default: one channel "readings", restricted mode, security 2, with a side key generated on first use.
Why restricted: a reading carries a household's consumption, which is personal data; the side key is shared
with whoever audits (households, the co-op board), while the salted digests anchored on chain stay checkable
by anyone through `scb verify` with a proof file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mam_client.mam.channel import MAX_COUNT, MODES
from mam_client.node.settings import NodeSettings
from scb import settings as check
from scb.config import Config
from scb.errors import ConfigError

#: The top-level sections this module reads ([tangle_node] belongs to mam_client.node.settings).
SECTIONS: tuple[str, ...] = ("iota", "mam")
POW_MODES = ("remote", "local")
TAG_RE = re.compile(r"[9A-Z]{1,27}")
CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: getTransactionsToApprove depth: IRI refuses more than its maxDepth (15 by default, also our node's default).
MAX_DEPTH = 15
#: Local proof-of-work threads; the same ceiling as the embedded node's [tangle_node] pow_threads.
MAX_POW_THREADS = 64

IOTA_DEFAULTS = {
    # empty: the embedded local tangle node ([tangle_node] host/port)
    "node_url": "",
    "mwm": 9,
    "depth": 3,
    # "remote": the node does attachToTangle; "local": the hub does the proof of work itself
    "pow": "remote",
    "pow_threads": 0,  # 0: one per CPU core
    "tag": "SCB",
    "timeout_s": 30.0,
}
MAM_DEFAULTS = {
    "api_host": "127.0.0.1",
    "api_port": 8710,
    # Host names the API answers to besides loopback names and api_host ("*": any); see docs/mam.md "The API"
    "api_allowed_hosts": [],
    # bearer token for POST /messages; empty: <data_dir>/secrets/mam-api.token, created on first start
    "api_token_file": "",
    "poll_interval_s": 1.0,
    "backoff_initial_s": 1.0,
    "backoff_max_s": 300.0,
    "channels": {},
}
CHANNEL_DEFAULTS = {"mode": "restricted", "security": 2, "side_key_file": "", "seed_file": "", "count": 1}
DEFAULT_CHANNELS = {"readings": {}}
TANGLE_NODE_DEFAULT_URL = "http://127.0.0.1:14265"


@dataclass(frozen=True)
class ChannelSettings:
    name: str
    mode: str
    security: int
    count: int
    seed_file: Path
    side_key_file: Path | None


@dataclass(frozen=True)
class IotaSettings:
    node_url: str
    embedded_node: bool
    mwm: int
    depth: int
    pow: str
    pow_threads: int
    tag: str
    timeout_s: float


@dataclass(frozen=True)
class MamSettings:
    api_host: str
    api_port: int
    api_allowed_hosts: tuple[str, ...]
    api_token_file: Path
    poll_interval_s: float
    backoff_initial_s: float
    backoff_max_s: float
    channels: dict[str, ChannelSettings]


def iota_settings(config: Config) -> IotaSettings:
    """Validate `[iota]`; with no node_url, the embedded node's URL from `[tangle_node]` (validated too)."""
    raw = check.read_section(config, "iota", IOTA_DEFAULTS)
    url = raw.url("node_url", allow_empty=True)
    if not url:  # the embedded node, at the address its own (validated) section gives
        url = NodeSettings.from_config(config).url
    return IotaSettings(
        node_url=url,
        embedded_node=not raw["node_url"].strip(),
        mwm=raw.integer("mwm", 1, 27),
        depth=raw.integer("depth", 1, MAX_DEPTH),
        pow=raw.choice("pow", POW_MODES),
        pow_threads=raw.integer("pow_threads", 0, MAX_POW_THREADS),
        tag=raw.string("tag", pattern=TAG_RE, allow_empty=False, expected="1 to 27 trytes (9 and A-Z)"),
        timeout_s=raw.number("timeout_s", 0.1, 600),
    )


def _channel(name: str, spec: object, secrets_dir: Path) -> ChannelSettings:
    key = f"mam.channels.{name}"
    if CHANNEL_NAME_RE.fullmatch(name) is None:
        raise ConfigError(f"channel name {check.show(name)} in [mam.channels] must be 1-64 letters, digits, "
                          "'-' or '_'")
    table = check.table(key, spec)
    check.known_keys(key, table, CHANNEL_DEFAULTS)
    raw = check.Section(key, {**CHANNEL_DEFAULTS, **table})
    mode = raw.choice("mode", MODES)
    security = raw.integer("security", 1, 3)
    count = raw.integer("count", 1, MAX_COUNT)
    if count & (count - 1):
        raise check.fail(raw.key("count"), f"a power of two from 1 to {MAX_COUNT}", count)
    seed_file = raw.path("seed_file", allow_empty=True) or secrets_dir / f"mam-{name}.seed"
    side_key = raw.path("side_key_file", allow_empty=True)
    if mode == "restricted":
        side_key = side_key or secrets_dir / f"mam-{name}.sidekey"
    elif side_key is not None:
        raise ConfigError(f"{raw.key('side_key_file')} is only used in restricted mode (mode is {mode!r})")
    return ChannelSettings(name=name, mode=mode, security=security, count=count, seed_file=seed_file,
                           side_key_file=side_key)


def mam_settings(config: Config) -> MamSettings:
    """Validate `[mam]` and its channels; with none configured, the default restricted channel "readings"."""
    raw = check.read_section(config, "mam", MAM_DEFAULTS)
    channels_raw = raw.table("channels") or DEFAULT_CHANNELS
    secrets_dir = config.data_dir / "secrets"
    channels = {name: _channel(name, spec, secrets_dir) for name, spec in channels_raw.items()}
    backoff_initial = raw.number("backoff_initial_s", 0.01, 86_400)
    return MamSettings(
        api_host=raw.host("api_host"),
        api_port=raw.port("api_port"),
        api_allowed_hosts=tuple(raw.string_list("api_allowed_hosts", expected="a list of host names")),
        api_token_file=raw.path("api_token_file", allow_empty=True) or secrets_dir / "mam-api.token",
        poll_interval_s=raw.number("poll_interval_s", 0.01, 3600),
        backoff_initial_s=backoff_initial,
        backoff_max_s=raw.number("backoff_max_s", backoff_initial, 86_400),
        channels=channels,
    )
