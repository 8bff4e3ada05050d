"""Typed view of the IOTA and MAM configuration ([iota], [mam], [mam.channels.NAME]).

Embedded default: one channel "readings", restricted mode, security 2, with a side key generated on first use.
Why restricted: a reading carries a household's consumption, which is personal data; the side key is shared
with whoever audits (households, the co-op board), while the salted digests anchored on chain stay checkable
by anyone through `scb verify` with a proof file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mam_client.mam.channel import MAX_COUNT, MODES
from scb.config import Config
from scb.errors import ConfigError

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
    poll_interval_s: float
    backoff_initial_s: float
    backoff_max_s: float
    channels: dict[str, ChannelSettings]


def iota_settings(config: Config) -> IotaSettings:
    raw = config.section("iota", IOTA_DEFAULTS)
    pow_mode = str(raw["pow"])
    if pow_mode not in ("remote", "local"):
        raise ConfigError(f"iota.pow must be 'remote' or 'local', not {pow_mode!r}")
    try:
        mwm, depth, threads = int(raw["mwm"]), int(raw["depth"]), int(raw["pow_threads"])
        timeout = float(raw["timeout_s"])
    except (TypeError, ValueError):
        raise ConfigError("iota.mwm, iota.depth, iota.pow_threads must be integers, iota.timeout_s a number") from None
    if not 1 <= mwm <= 27:
        raise ConfigError(f"iota.mwm must be between 1 and 27, not {mwm}")
    tag = str(raw["tag"])
    if not tag or len(tag) > 27 or any(c not in "9ABCDEFGHIJKLMNOPQRSTUVWXYZ" for c in tag):
        raise ConfigError("iota.tag must be 1 to 27 trytes (9A-Z)")
    url = str(raw["node_url"]).strip()
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"iota.node_url must be an http(s) URL, not {url!r}")
    if not url:
        host = config.data.get("tangle_node", {}).get("host", "127.0.0.1")
        port = config.data.get("tangle_node", {}).get("port", 14265)
        url = f"http://{host}:{port}"
    return IotaSettings(node_url=url, embedded_node=not raw["node_url"], mwm=mwm, depth=depth, pow=pow_mode,
                        pow_threads=threads, tag=tag, timeout_s=timeout)


def mam_settings(config: Config) -> MamSettings:
    raw = config.section("mam", MAM_DEFAULTS)
    channels_raw = raw["channels"] or DEFAULT_CHANNELS
    if not isinstance(channels_raw, dict):
        raise ConfigError("[mam.channels] must be a table of channels")
    secrets_dir = config.data_dir / "secrets"
    channels: dict[str, ChannelSettings] = {}
    for name, spec in channels_raw.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"[mam.channels.{name}] must be a table")
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"channel name {name!r} must be 1-64 letters, digits, '-' or '_'")
        unknown = set(spec) - set(CHANNEL_DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))} in [mam.channels.{name}]")
        merged = {**CHANNEL_DEFAULTS, **spec}
        if merged["mode"] not in MODES:
            raise ConfigError(f"mam.channels.{name}.mode must be one of {', '.join(MODES)}")
        security, count = merged["security"], merged["count"]
        if security not in (1, 2, 3):
            raise ConfigError(f"mam.channels.{name}.security must be 1, 2 or 3")
        if not isinstance(count, int) or count < 1 or count & (count - 1) or count > MAX_COUNT:
            raise ConfigError(f"mam.channels.{name}.count must be a power of two up to {MAX_COUNT}")
        seed_file = Path(merged["seed_file"]) if merged["seed_file"] else secrets_dir / f"mam-{name}.seed"
        side_key_file = None
        if merged["mode"] == "restricted":
            side_key_file = (Path(merged["side_key_file"]) if merged["side_key_file"]
                             else secrets_dir / f"mam-{name}.sidekey")
        elif merged["side_key_file"]:
            raise ConfigError(f"mam.channels.{name}.side_key_file is only used in restricted mode")
        channels[name] = ChannelSettings(name=name, mode=merged["mode"], security=security, count=count,
                                         seed_file=seed_file, side_key_file=side_key_file)
    try:
        port = int(raw["api_port"])
        floats = [float(raw[k]) for k in ("poll_interval_s", "backoff_initial_s", "backoff_max_s")]
    except (TypeError, ValueError):
        raise ConfigError("mam.api_port must be an integer and the mam.*_s settings numbers") from None
    return MamSettings(api_host=str(raw["api_host"]), api_port=port, poll_interval_s=floats[0],
                       backoff_initial_s=floats[1], backoff_max_s=floats[2], channels=channels)
