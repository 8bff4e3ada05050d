"""`[tangle_node]`: the local IOTA dev node's settings, typed and checked once at start-up.

Defaults make `scb tangle-node` run with no configuration at all (the embedded default of the hub). Every key
can be overridden in scb.toml or with `SCB_TANGLE_NODE__<KEY>`; an unknown key is an error (scb.config).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scb.config import Config
from scb.errors import ConfigError

#: The section's keys and their defaults. The limits are IRI's defaults (maxRequestsList, maxGetTrytes,
#: maxFindTransactions, maxBodyLength) so that a client that works here is not surprised by a real node.
DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 14265,
    "mwm": 9,
    "db": "",  # empty: <data_dir>/tangle.sqlite3
    "pow_threads": 0,  # 0: one per core
    "remote_pow": True,  # false: attachToTangle is refused like on a public node (clients do PoW locally)
    "max_attach_mwm": 18,
    "max_body_bytes": 1_000_000,
    "max_requests_list": 1_000,
    "max_get_trytes": 10_000,
    "max_find_transactions": 100_000,
    "max_tips": 10_000,
    "max_depth": 15,
}


@dataclass(frozen=True)
class NodeSettings:
    """What the node needs to run; tests build one directly (`NodeSettings(db=tmp_path / 'x.sqlite3')`)."""

    db: Path
    host: str = DEFAULTS["host"]
    port: int = DEFAULTS["port"]
    mwm: int = DEFAULTS["mwm"]
    pow_threads: int = DEFAULTS["pow_threads"]
    remote_pow: bool = DEFAULTS["remote_pow"]
    max_attach_mwm: int = DEFAULTS["max_attach_mwm"]
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    max_requests_list: int = DEFAULTS["max_requests_list"]
    max_get_trytes: int = DEFAULTS["max_get_trytes"]
    max_find_transactions: int = DEFAULTS["max_find_transactions"]
    max_tips: int = DEFAULTS["max_tips"]
    max_depth: int = DEFAULTS["max_depth"]

    def __post_init__(self) -> None:
        def need_int(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"tangle_node.{name} must be an integer {low}..{high}, not {value!r}")

        need_int("port", 0, 65535)
        need_int("mwm", 0, 27)
        need_int("max_attach_mwm", self.mwm if isinstance(self.mwm, int) else 0, 27)
        need_int("pow_threads", 0, 64)
        need_int("max_body_bytes", 10_000, 100_000_000)
        for name in ("max_requests_list", "max_get_trytes", "max_find_transactions", "max_tips"):
            need_int(name, 1, 10_000_000)
        need_int("max_depth", 0, 1000)
        if not isinstance(self.remote_pow, bool):
            raise ConfigError(f"tangle_node.remote_pow must be true or false, not {self.remote_pow!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("tangle_node.host must be a host name or address")

    @classmethod
    def from_config(cls, config: Config) -> "NodeSettings":
        raw = config.section("tangle_node", DEFAULTS)
        db_raw = raw.pop("db")
        db = Path(str(db_raw)).expanduser() if db_raw else config.data_dir / "tangle.sqlite3"
        return cls(db=db, **raw)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
