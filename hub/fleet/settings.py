"""`[fleet]`: the hub's upload to a fleet server, and the fleet server itself (`scb fleet serve`), in one section.

    [fleet]
    url = ""                    # hub: the fleet server to upload to ("" : no upload, no fleet-upload process)
    upload_interval_s = 5.0     # hub: how often the uploader looks for new rows when it has caught up
    batch_max_items = 1000      # hub: most items in one upload
    heartbeat_interval_s = 30.0 # hub: an upload with only the heartbeat at least this often
    timeout_s = 30.0            # hub: one upload's HTTP timeout
    database_url = ""           # server: "" : SQLite <data_dir>/fleet.sqlite3; postgresql+psycopg://... for real
    host = "127.0.0.1"          # server: where `scb fleet serve` listens
    port = 8730
    allowed_hosts = []          # server: Host names it answers to besides loopback and `host` ("*": any)
    rpc_url = ""                # server: with `contract`, accept every account holding a system's hub role
    contract = ""
    max_body_mb = 16            # server: the largest upload accepted
    stale_after_s = 300.0       # server: a hub whose last heartbeat is older is shown stale on the fleet page

One section for both sides: a machine is usually one or the other, and the names (`url` vs `host`/`port`) do not
collide. Why the settings live in the application layer and not in the server's package: the hub's uploader
reads them, and the hub must not import a front end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scb.config import Config
from scb.settings import read_section

SECTIONS = ("fleet",)

DEFAULTS: dict[str, Any] = {
    "url": "",
    "upload_interval_s": 5.0,
    "batch_max_items": 1000,
    "heartbeat_interval_s": 30.0,
    "timeout_s": 30.0,
    "database_url": "",
    "host": "127.0.0.1",
    "port": 8730,
    "allowed_hosts": [],
    "rpc_url": "",
    "contract": "",
    "max_body_mb": 16,
    "stale_after_s": 300.0,
}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class FleetSettings:
    url: str
    upload_interval_s: float
    batch_max_items: int
    heartbeat_interval_s: float
    timeout_s: float
    database_url: str
    host: str
    port: int
    allowed_hosts: list[str]
    rpc_url: str
    contract: str
    max_body_bytes: int
    stale_after_s: float

    @property
    def uploads(self) -> bool:
        return bool(self.url)


def fleet_settings(config: Config) -> FleetSettings:
    from hub.fleet.protocol import MAX_ITEMS

    raw = read_section(config, "fleet", DEFAULTS)
    db = raw.string("database_url", expected='an SQLAlchemy database URL (or "" for <data_dir>/fleet.sqlite3)')
    contract = raw.string("contract", pattern=_ADDRESS, expected='a contract address (0x + 40 hex digits) or ""')
    rpc = raw.url("rpc_url", allow_empty=True)
    if bool(contract) != bool(rpc):
        from scb.errors import ConfigError

        raise ConfigError("fleet.rpc_url and fleet.contract go together: set both (accept the contract's hubs) "
                          "or neither (accept the accounts of `scb fleet allow` only)")
    return FleetSettings(
        url=raw.url("url", allow_empty=True).rstrip("/"),
        upload_interval_s=raw.number("upload_interval_s", 0.05, 3600),
        batch_max_items=raw.integer("batch_max_items", 1, MAX_ITEMS),
        heartbeat_interval_s=raw.number("heartbeat_interval_s", 1, 86_400),
        timeout_s=raw.number("timeout_s", 0.1, 600),
        database_url=db or f"sqlite:///{config.data_dir / 'fleet.sqlite3'}",
        host=raw.host("host"), port=raw.port("port"),
        allowed_hosts=raw.string_list("allowed_hosts"),
        rpc_url=rpc, contract=contract,
        max_body_bytes=raw.integer("max_body_mb", 1, 1024) * 1024 * 1024,
        stale_after_s=raw.number("stale_after_s", 1, 30 * 86_400),
    )
