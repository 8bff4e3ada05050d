"""`[tangle_node]`: the local IOTA dev node's settings, typed and checked once at start-up.

Defaults make `scb tangle-node` run with no configuration at all (the embedded default of the hub). Every key
can be overridden in scb.toml or with `SCB_TANGLE_NODE__<KEY>`; an unknown key is an error (scb.config).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scb import settings as check
from scb.config import Config

#: The top-level section this module reads.
SECTIONS: tuple[str, ...] = ("tangle_node",)
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
    # pruning (mam_client.node.prune): transactions of messages the hub archived this long ago are deleted; 0: never
    "prune_after_s": 86_400.0,
    "prune_interval_s": 60.0,
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
    prune_after_s: float = DEFAULTS["prune_after_s"]
    prune_interval_s: float = DEFAULTS["prune_interval_s"]

    def __post_init__(self) -> None:
        # Also checks a NodeSettings built in code; port 0 (the OS picks a free port) is allowed there, for tests,
        # while from_config requires a real port (no client could find a node on port 0).
        s = "tangle_node"
        check.host(f"{s}.host", self.host)
        check.integer(f"{s}.port", self.port, 0, 65535)
        check.integer(f"{s}.mwm", self.mwm, 0, 27)
        check.integer(f"{s}.max_attach_mwm", self.max_attach_mwm, self.mwm, 27)
        check.integer(f"{s}.pow_threads", self.pow_threads, 0, 64)
        check.integer(f"{s}.max_body_bytes", self.max_body_bytes, 10_000, 100_000_000)
        for name in ("max_requests_list", "max_get_trytes", "max_find_transactions", "max_tips"):
            check.integer(f"{s}.{name}", getattr(self, name), 1, 10_000_000)
        check.integer(f"{s}.max_depth", self.max_depth, 0, 1000)
        check.boolean(f"{s}.remote_pow", self.remote_pow)
        # up to a year: a longer wait is a typo, and 0 switches pruning off
        check.number(f"{s}.prune_after_s", self.prune_after_s, 0, 366 * 86_400)
        # at least a second: each pass is a write transaction that holds up storeTransactions
        check.number(f"{s}.prune_interval_s", self.prune_interval_s, 1, 86_400)

    @classmethod
    def from_config(cls, config: Config) -> "NodeSettings":
        raw = check.read_section(config, "tangle_node", DEFAULTS)
        values = dict(raw.values)
        values["host"] = raw.host("host")
        values["port"] = raw.port("port")
        db = raw.path("db", allow_empty=True)
        values["db"] = db if db is not None else config.data_dir / "tangle.sqlite3"
        return cls(**values)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
