"""Typed view of the `[ethereum]` and `[settlement]` configuration sections.

Embedded default (no configuration at all): the hub talks to the local anvil that `scb run` starts on
127.0.0.1:8545, signs with that chain's first well-known development account, deploys SolarProperty there once and
registers a demo system whose holders are the next anvil accounts, one per demo household. Anything else (a real
chain) needs `[ethereum] rpc_url`, `contract_address`, a keystore and its password file, and the holder map of a
system an approver registered. Every error names the key, because a wrong address here bills the wrong people.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scb.config import Config
from scb.errors import ConfigError

ETHEREUM_DEFAULTS: dict[str, Any] = {
    # empty: the embedded local anvil on 127.0.0.1:local_port (started by `scb run`)
    "rpc_url": "",
    "local_port": 8545,
    # empty: on a development chain (anvil), deploy once and remember the address in the database
    "contract_address": "",
    # 0: accept whatever chain the node serves; otherwise refuse a node that serves another chain
    "chain_id": 0,
    # encrypted JSON keystore of the hub account and its password, both mode 0600; empty on a development chain:
    # its first well-known account
    "keystore_file": "",
    "password_file": "",
    # blocks that must exist on top of (and including) a transaction's block before it counts as final
    "confirmations": 1,
    "timeout_s": 15.0,
    "receipt_timeout_s": 120.0,
    # eth_estimateGas times this margin is the gas limit of a transaction
    "gas_margin": 1.25,
    # 0: the node's suggestion; otherwise caps (gwei) so a fee spike cannot drain the hub account
    "max_fee_gwei": 0.0,
    "priority_fee_gwei": 0.0,
    # auto: set the chain's block time to the community clock on a development chain when the community clock is
    # simulated (docs/settlement.md "Community time and chain time"); on / off force it
    "time_sync": "auto",
}

DEMO_DEFAULTS: dict[str, Any] = {
    "price_per_kwh_wei": 10**15,  # 0.001 ether per kWh
    "total_value_wei": 10**18,  # the panels are worth 1 ether
    "grace_period_s": 86_400,  # community seconds a bill may stay unpaid
    "shares_bps": [],  # empty: equal shares (the first holders get the remainder)
    "beneficiary": "",  # empty: the hub account
}

SETTLEMENT_DEFAULTS: dict[str, Any] = {
    # length of a settlement period in community-clock seconds (a day in production, an hour in the demo)
    "period_s": 3600,
    # community seconds after a period's end before it is settled: late readings still arrive in this window
    "lateness_s": 300,
    # 0: the system this hub registered on the development chain; otherwise the id an approver gave it
    "system_id": 0,
    # party id (as in [energy] meters) -> holder account, for a system registered by an approver
    "holders": {},
    # real seconds between looks for a closed period
    "check_interval_s": 5.0,
    # real seconds between standing checks (supply decisions)
    "supply_interval_s": 60.0,
    # back-off while the chain is unreachable (real seconds)
    "retry_initial_s": 5.0,
    "retry_max_s": 300.0,
    # "log": decisions are logged only; "serial": a relay board on a serial port gets one line per change
    "actuator": "log",
    "relay_port": "",
    "relay_baud": 9600,
    "demo": {},
}

ACTUATORS = ("log", "serial")
TIME_SYNC = ("auto", "on", "off")
ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
PARTY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
UINT128_MAX = 2**128 - 1
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class EthereumSettings:
    rpc_url: str
    embedded: bool  # no rpc_url configured: the local anvil
    contract_address: str | None
    chain_id: int | None
    keystore_file: Path | None
    password_file: Path | None
    confirmations: int
    timeout_s: float
    receipt_timeout_s: float
    gas_margin: float
    max_fee_wei: int | None
    priority_fee_wei: int | None
    time_sync: str


@dataclass(frozen=True)
class DemoSystem:
    price_per_kwh_wei: int
    total_value_wei: int
    grace_period_s: int
    shares_bps: tuple[int, ...]
    beneficiary: str | None


@dataclass(frozen=True)
class SettlementSettings:
    period_s: int
    lateness_s: int
    system_id: int | None
    holders: dict[str, str]  # party -> checksum-agnostic 0x address, as configured
    check_interval_s: float
    supply_interval_s: float
    retry_initial_s: float
    retry_max_s: float
    actuator: str
    relay_port: str
    relay_baud: int
    demo: DemoSystem


def _int(section: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{section}.{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _float(section: str, key: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{section}.{key} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _address(section: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or ADDRESS_RE.fullmatch(value) is None:
        raise ConfigError(f"{section}.{key} must be an Ethereum address (0x and 40 hex digits), not {value!r}")
    return value


def _gwei(section: str, key: str, value: Any) -> int | None:
    amount = _float(section, key, value, 0.0, 1_000_000.0)
    return None if amount == 0 else int(amount * 10**9)


def ethereum_settings(config: Config) -> EthereumSettings:
    """Validate `[ethereum]`; raise ConfigError naming the key on any bad value."""
    s = "ethereum"
    raw = config.section(s, ETHEREUM_DEFAULTS)
    url = raw["rpc_url"]
    if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
        raise ConfigError(f"{s}.rpc_url must be an http(s) URL (or empty for the local anvil), not {url!r}")
    port = _int(s, "local_port", raw["local_port"], 1, 65535)
    embedded = not url
    if embedded:
        url = f"http://127.0.0.1:{port}"
    contract = _address(s, "contract_address", raw["contract_address"]) if raw["contract_address"] else None
    chain_id = _int(s, "chain_id", raw["chain_id"], 0, 2**63 - 1) or None
    keystore = Path(raw["keystore_file"]).expanduser() if raw["keystore_file"] else None
    password = Path(raw["password_file"]).expanduser() if raw["password_file"] else None
    if (keystore is None) != (password is None):
        missing = "password_file" if password is None else "keystore_file"
        raise ConfigError(f"{s}.keystore_file and {s}.password_file go together: set {s}.{missing} too")
    time_sync = raw["time_sync"]
    if time_sync not in TIME_SYNC:
        raise ConfigError(f"{s}.time_sync must be one of {', '.join(TIME_SYNC)}, not {time_sync!r}")
    return EthereumSettings(
        rpc_url=url,
        embedded=embedded,
        contract_address=contract,
        chain_id=chain_id,
        keystore_file=keystore,
        password_file=password,
        confirmations=_int(s, "confirmations", raw["confirmations"], 1, 1000),
        timeout_s=_float(s, "timeout_s", raw["timeout_s"], 0.1, 600),
        receipt_timeout_s=_float(s, "receipt_timeout_s", raw["receipt_timeout_s"], 1, 86_400),
        gas_margin=_float(s, "gas_margin", raw["gas_margin"], 1.0, 10.0),
        max_fee_wei=_gwei(s, "max_fee_gwei", raw["max_fee_gwei"]),
        priority_fee_wei=_gwei(s, "priority_fee_gwei", raw["priority_fee_gwei"]),
        time_sync=time_sync,
    )


def _demo(config: Config) -> DemoSystem:
    s = "settlement.demo"
    raw = config.section(s, DEMO_DEFAULTS)
    shares = raw["shares_bps"]
    if not isinstance(shares, list) or any(isinstance(x, bool) or not isinstance(x, int) or not 0 < x <= 10_000
                                           for x in shares):
        raise ConfigError(f"{s}.shares_bps must be a list of basis points (1..10000 each), not {shares!r}")
    if shares and sum(shares) != 10_000:
        raise ConfigError(f"{s}.shares_bps must sum to 10000, not {sum(shares)}")
    return DemoSystem(
        price_per_kwh_wei=_int(s, "price_per_kwh_wei", raw["price_per_kwh_wei"], 1, UINT128_MAX),
        total_value_wei=_int(s, "total_value_wei", raw["total_value_wei"], 1, UINT128_MAX),
        grace_period_s=_int(s, "grace_period_s", raw["grace_period_s"], 0, UINT32_MAX),
        shares_bps=tuple(shares),
        beneficiary=_address(s, "beneficiary", raw["beneficiary"]) if raw["beneficiary"] else None,
    )


def settlement_settings(config: Config) -> SettlementSettings:
    """Validate `[settlement]` (and `[settlement.demo]`, `[settlement.holders]`)."""
    s = "settlement"
    raw = config.section(s, SETTLEMENT_DEFAULTS)
    period = _int(s, "period_s", raw["period_s"], 1, 366 * 86_400)
    lateness = _int(s, "lateness_s", raw["lateness_s"], 0, 366 * 86_400)
    holders_raw = raw["holders"]
    if not isinstance(holders_raw, dict):
        raise ConfigError(f"[{s}.holders] must be a table of party = \"0x...\" entries")
    holders: dict[str, str] = {}
    seen: dict[str, str] = {}
    for party, address in holders_raw.items():
        if PARTY_RE.fullmatch(party) is None:
            raise ConfigError(f"{s}.holders: {party!r} is not a party id (letters, digits, '_', '.', '-')")
        checked = _address(f"{s}.holders", party, address)
        if checked.lower() in seen:
            raise ConfigError(f"{s}.holders.{party} repeats the address of {seen[checked.lower()]}")
        seen[checked.lower()] = party
        holders[party] = checked
    actuator = raw["actuator"]
    if actuator not in ACTUATORS:
        raise ConfigError(f"{s}.actuator must be one of {', '.join(ACTUATORS)}, not {actuator!r}")
    port = raw["relay_port"]
    if not isinstance(port, str):
        raise ConfigError(f"{s}.relay_port must be a serial port path, not {port!r}")
    if actuator == "serial" and not port:
        raise ConfigError(f"{s}.relay_port must name the relay board's serial port (e.g. /dev/ttyUSB1) "
                          f"when {s}.actuator is \"serial\"")
    system_id = _int(s, "system_id", raw["system_id"], 0, 2**63 - 1) or None
    if system_id is not None and not holders:
        raise ConfigError(f"{s}.system_id is set: map the system's holders in [{s}.holders] "
                          "(party = \"0x...\") so that consumption is billed to the right account")
    retry_initial = _float(s, "retry_initial_s", raw["retry_initial_s"], 0.01, 86_400)
    return SettlementSettings(
        period_s=period,
        lateness_s=lateness,
        system_id=system_id,
        holders=holders,
        check_interval_s=_float(s, "check_interval_s", raw["check_interval_s"], 0.05, 86_400),
        supply_interval_s=_float(s, "supply_interval_s", raw["supply_interval_s"], 0.05, 86_400),
        retry_initial_s=retry_initial,
        retry_max_s=_float(s, "retry_max_s", raw["retry_max_s"], retry_initial, 86_400),
        actuator=actuator,
        relay_port=port,
        relay_baud=_int(s, "relay_baud", raw["relay_baud"], 50, 4_000_000),
        demo=_demo(config),
    )
