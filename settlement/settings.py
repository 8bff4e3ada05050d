"""Typed view of the `[ethereum]` and `[settlement]` configuration sections.

Embedded default (no configuration at all): the hub talks to the local anvil that `scb run` starts on
127.0.0.1:8545, signs with that chain's first well-known development account, deploys SolarProperty there once and
registers a demo system whose holders are the next anvil accounts, one per demo household. Anything else (a real
chain) needs `[ethereum] rpc_url`, `contract_address`, a keystore and its password file, and the holder map of a
system an approver registered. Every error names the key, because a wrong address here bills the wrong people.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scb import settings as check
from scb.config import Config
from scb.errors import ConfigError

#: The top-level sections this module reads ([settlement.demo] and [settlement.holders] are inside "settlement").
SECTIONS: tuple[str, ...] = ("ethereum", "settlement")

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
    # 0: the node's suggestion; otherwise caps (gwei) so a fee spike cannot drain the hub account: a fee the chain
    # asks above the cap waits (shown by `scb status`) instead of being paid (docs/settlement.md "Fees")
    "max_fee_gwei": 0.0,
    # a fixed tip (gwei) instead of the node's eth_maxPriorityFeePerGas; 0: the node's
    "priority_fee_gwei": 0.0,
    # a cap (gwei) on the tip, whichever its source; 0: none
    "max_priority_fee_gwei": 0.0,
    # auto: EIP-1559 fees when the latest block has a base fee, legacy gasPrice otherwise; or force one of them
    "tx_type": "auto",
    # real seconds a settle transaction may stay unmined before it is replaced (same nonce, fees +12.5 %)
    "replace_after_s": 180.0,
    # blocks per eth_getLogs request (halved while the provider refuses a range; hosted providers allow 1k-10k)
    "log_chunk_blocks": 2000,
    # real seconds between checks of every settled period's on-chain root against the local one (after finality)
    "root_check_interval_s": 3600.0,
    # real seconds one request may spend backing off while the provider answers 429 / "limit exceeded"
    "rate_limit_wait_s": 120.0,
    # auto: set the chain's block time to the community clock on a development chain when the community clock is
    # simulated (docs/settlement.md "Community time and chain time"); on / off force it
    "time_sync": "auto",
}

DEMO_DEFAULTS: dict[str, Any] = {
    "price_per_kwh_wei": 10**15,  # 0.001 ether per kWh
    "total_value_wei": 10**18,  # the panels are worth 1 ether
    # community seconds a bill may stay unpaid. Why 4 hours and not a day: at the demo's clock speed (60x) a day of
    # grace is 24 real minutes; with 4 hours the demo's non-paying household falls out of good standing about 5
    # minutes after ./start_scb.sh and is repossessed a little later (settlement.households)
    "grace_period_s": 14_400,
    "shares_bps": [],  # empty: equal shares (the first holders get the remainder)
    "beneficiary": "",  # empty: the hub account
    # peak powers registered with the system (SolarProperty 2 refuses a period's generation above the system's
    # peak x period length and a holder's consumption above theirs): about 4x the simulated community's (a 6 kW
    # array, households drawing at most ~5 kW), so that late readings and short first periods stay within them
    "peak_power_w": 24_000,
    "holder_peak_w": 20_000,
    # basis points of a repossessed share's value kept from its equity for the beneficiary
    "repossession_fee_bps": 0,
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
TX_TYPES = ("auto", "eip1559", "legacy")
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
    # no defaults here: ETHEREUM_DEFAULTS is the one table of them (ethereum_settings passes every field)
    max_priority_fee_wei: int | None
    tx_type: str
    replace_after_s: float
    log_chunk_blocks: int
    root_check_interval_s: float
    rate_limit_wait_s: float


@dataclass(frozen=True)
class DemoSystem:
    price_per_kwh_wei: int
    total_value_wei: int
    grace_period_s: int
    shares_bps: tuple[int, ...]
    beneficiary: str | None
    # no defaults here: DEMO_DEFAULTS is the one table of them (_demo passes every field)
    peak_power_w: int
    holder_peak_w: int
    repossession_fee_bps: int


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


ADDRESS_TEXT = "an Ethereum address (0x and 40 hex digits)"


def _address(key: str, value: Any) -> str:
    return check.string(key, value, pattern=ADDRESS_RE, allow_empty=False, expected=ADDRESS_TEXT)


def _gwei(raw: check.Section, key: str) -> int | None:
    amount = raw.number(key, 0.0, 1_000_000.0)
    return None if amount == 0 else int(amount * 10**9)


def ethereum_settings(config: Config) -> EthereumSettings:
    """Validate `[ethereum]`; raise ConfigError naming the key on any bad value."""
    s = "ethereum"
    raw = check.read_section(config, s, ETHEREUM_DEFAULTS)
    url = raw.url("rpc_url", allow_empty=True)
    port = raw.port("local_port")
    embedded = not url
    if embedded:
        url = f"http://127.0.0.1:{port}"
    contract = _address(raw.key("contract_address"), raw["contract_address"]) if raw["contract_address"] else None
    chain_id = raw.integer("chain_id", 0, 2**63 - 1) or None
    keystore = raw.path("keystore_file", allow_empty=True)
    password = raw.path("password_file", allow_empty=True)
    if (keystore is None) != (password is None):
        missing = "password_file" if password is None else "keystore_file"
        raise ConfigError(f"{s}.keystore_file and {s}.password_file go together: set {s}.{missing} too")
    return EthereumSettings(
        rpc_url=url,
        embedded=embedded,
        contract_address=contract,
        chain_id=chain_id,
        keystore_file=keystore,
        password_file=password,
        confirmations=raw.integer("confirmations", 1, 1000),
        timeout_s=raw.number("timeout_s", 0.1, 600),
        receipt_timeout_s=raw.number("receipt_timeout_s", 1, 86_400),
        gas_margin=raw.number("gas_margin", 1.0, 10.0),
        max_fee_wei=_gwei(raw, "max_fee_gwei"),
        priority_fee_wei=_gwei(raw, "priority_fee_gwei"),
        time_sync=raw.choice("time_sync", TIME_SYNC),
        max_priority_fee_wei=_gwei(raw, "max_priority_fee_gwei"),
        tx_type=raw.choice("tx_type", TX_TYPES),
        replace_after_s=raw.number("replace_after_s", 1.0, 86_400),
        log_chunk_blocks=raw.integer("log_chunk_blocks", 1, 1_000_000),
        root_check_interval_s=raw.number("root_check_interval_s", 1.0, 30 * 86_400),
        rate_limit_wait_s=raw.number("rate_limit_wait_s", 0.0, 3600),
    )


def _demo(config: Config) -> DemoSystem:
    s = "settlement.demo"
    raw = check.read_section(config, s, DEMO_DEFAULTS)
    shares = raw.integer_list("shares_bps", 1, 10_000)
    if shares and sum(shares) != 10_000:
        raise check.fail(raw.key("shares_bps"), f"basis points summing to 10000 (these sum to {sum(shares)})", shares)
    return DemoSystem(
        price_per_kwh_wei=raw.integer("price_per_kwh_wei", 1, UINT128_MAX),
        total_value_wei=raw.integer("total_value_wei", 1, UINT128_MAX),
        # SolarProperty 2's MIN_GRACE_PERIOD: the grace period is also the approver's window to cancel a period
        grace_period_s=raw.integer("grace_period_s", 3600, UINT32_MAX),
        shares_bps=tuple(shares),
        beneficiary=_address(raw.key("beneficiary"), raw["beneficiary"]) if raw["beneficiary"] else None,
        peak_power_w=raw.integer("peak_power_w", 1, UINT32_MAX),
        holder_peak_w=raw.integer("holder_peak_w", 1, 2**20 - 1),  # the contract's MAX_HOLDER_PEAK_W
        repossession_fee_bps=raw.integer("repossession_fee_bps", 0, 10_000),
    )


def _holders(key: str, value: Any) -> dict[str, str]:
    holders: dict[str, str] = {}
    seen: dict[str, str] = {}
    for party, address in check.table(key, value).items():
        if PARTY_RE.fullmatch(party) is None:
            raise ConfigError(f"{key}: {check.show(party)} is not a party id (letters, digits, '_', '.', '-')")
        checked = _address(f"{key}.{party}", address)
        if checked.lower() in seen:
            raise ConfigError(f"{key}.{party} repeats the address of {seen[checked.lower()]}")
        seen[checked.lower()] = party
        holders[party] = checked
    return holders


def settlement_settings(config: Config) -> SettlementSettings:
    """Validate `[settlement]` (and `[settlement.demo]`, `[settlement.holders]`)."""
    s = "settlement"
    raw = check.read_section(config, s, SETTLEMENT_DEFAULTS)
    period = raw.integer("period_s", 1, 366 * 86_400)
    lateness = raw.integer("lateness_s", 0, 366 * 86_400)
    holders = _holders(raw.key("holders"), raw["holders"])
    actuator = raw.choice("actuator", ACTUATORS)
    port = raw.string("relay_port", expected='a serial port path (e.g. "/dev/ttyUSB1"), or ""')
    if actuator == "serial" and not port:
        raise ConfigError(f"{s}.relay_port must name the relay board's serial port (e.g. /dev/ttyUSB1) "
                          f"when {s}.actuator is \"serial\"")
    system_id = raw.integer("system_id", 0, 2**63 - 1) or None
    if system_id is not None and not holders:
        raise ConfigError(f"{s}.system_id is set: map the system's holders in [{s}.holders] "
                          "(party = \"0x...\") so that consumption is billed to the right account")
    retry_initial = raw.number("retry_initial_s", 0.01, 86_400)
    return SettlementSettings(
        period_s=period,
        lateness_s=lateness,
        system_id=system_id,
        holders=holders,
        check_interval_s=raw.number("check_interval_s", 0.05, 86_400),
        supply_interval_s=raw.number("supply_interval_s", 0.05, 86_400),
        retry_initial_s=retry_initial,
        retry_max_s=raw.number("retry_max_s", retry_initial, 86_400),
        actuator=actuator,
        relay_port=port,
        relay_baud=raw.integer("relay_baud", 50, 4_000_000),
        demo=_demo(config),
    )
