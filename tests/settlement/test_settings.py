"""[ethereum] and [settlement]: defaults, and errors that name the key."""
from __future__ import annotations

from typing import Any

import pytest

from scb.config import Config
from scb.errors import ConfigError
from settlement.settings import ethereum_settings, settlement_settings


def eth(**kw: Any):  # type: ignore[no-untyped-def]
    return ethereum_settings(Config(data={"ethereum": kw}))


def st(**kw: Any):  # type: ignore[no-untyped-def]
    return settlement_settings(Config(data={"settlement": kw}))


def test_embedded_defaults() -> None:
    e = eth()
    assert e.embedded and e.rpc_url == "http://127.0.0.1:8545" and e.contract_address is None
    assert e.keystore_file is None and e.time_sync == "auto" and e.confirmations == 1
    assert eth(local_port=9545).rpc_url == "http://127.0.0.1:9545"
    s = st()
    assert s.period_s == 3600 and s.system_id is None and s.holders == {} and s.actuator == "log"
    assert s.demo.shares_bps == () and s.demo.price_per_kwh_wei > 0


@pytest.mark.parametrize(("section", "kw", "key"), [
    ("ethereum", {"rpc_url": "ftp://x"}, "ethereum.rpc_url"),
    ("ethereum", {"local_port": 0}, "ethereum.local_port"),
    ("ethereum", {"contract_address": "0x12"}, "ethereum.contract_address"),
    ("ethereum", {"keystore_file": "/k.json"}, "ethereum.password_file"),
    ("ethereum", {"confirmations": 0}, "ethereum.confirmations"),
    ("ethereum", {"gas_margin": 0.5}, "ethereum.gas_margin"),
    ("ethereum", {"time_sync": "maybe"}, "ethereum.time_sync"),
    ("ethereum", {"chian_id": 1}, "ethereum.chian_id"),
    ("settlement", {"period_s": 0}, "settlement.period_s"),
    ("settlement", {"period_s": 1.5}, "settlement.period_s"),
    ("settlement", {"lateness_s": -1}, "settlement.lateness_s"),
    ("settlement", {"actuator": "gpio"}, "settlement.actuator"),
    ("settlement", {"actuator": "serial"}, "settlement.relay_port"),
    ("settlement", {"system_id": 3}, "settlement.holders"),
    ("settlement", {"holders": {"h1": "nope"}}, "settlement.holders.h1"),
    ("settlement", {"holders": {"h1": "0x" + "1" * 40, "h2": "0x" + "1" * 40}}, "settlement.holders.h2"),
    ("settlement", {"retry_initial_s": 10, "retry_max_s": 5}, "settlement.retry_max_s"),
    ("settlement", {"demo": {"shares_bps": [5000, 4000]}}, "settlement.demo.shares_bps"),
    ("settlement", {"demo": {"price_per_kwh_wei": 0}}, "settlement.demo.price_per_kwh_wei"),
    ("settlement", {"demo": {"grace": 5}}, "settlement.demo.grace"),
    ("ethereum", {"chain_id": 1.0}, "ethereum.chain_id must be an integer"),
    ("ethereum", {"local_port": "8545"}, 'ethereum.local_port must be an integer from 1 to 65535, not "8545"'),
    ("ethereum", {"rpc_url": "https://"}, 'ethereum.rpc_url must be an http or https URL (or "" for the default)'),
    ("ethereum", {"timeout_s": False}, "ethereum.timeout_s must be a number from 0.1 to 600, not false"),
    ("ethereum", {"keystore_file": 1, "password_file": "/p"}, "ethereum.keystore_file must be a path"),
    ("settlement", {"relay_baud": 9600.0}, "settlement.relay_baud must be an integer from 50 to 4000000, not 9600.0"),
    ("settlement", {"holders": "0x12"}, "[settlement.holders] must be a table"),
    ("settlement", {"demo": {"shares_bps": [5000, "5000"]}}, 'settlement.demo.shares_bps[1] must be an integer'),
    ("settlement", {"demo": {"shares_bps": [5000, True]}}, "settlement.demo.shares_bps[1] must be an integer"),
])
def test_bad_values_name_the_key(section: str, kw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        (eth if section == "ethereum" else st)(**kw)
    assert key in str(err.value)


def test_environment_overrides() -> None:
    from scb.config import load_config

    config = load_config(environ={"SCB_ETHEREUM__CHAIN_ID": "11155111", "SCB_SETTLEMENT__PERIOD_S": "86400",
                                  "SCB_SETTLEMENT__DEMO__SHARES_BPS": "[6000, 4000]"})
    assert ethereum_settings(config).chain_id == 11155111
    assert settlement_settings(config).period_s == 86400
    assert settlement_settings(config).demo.shares_bps == (6000, 4000)
    with pytest.raises(ConfigError, match=r"^settlement\.period_s must be an integer from 1 to 31622400, not 1\.5$"):
        settlement_settings(load_config(environ={"SCB_SETTLEMENT__PERIOD_S": "1.5"}))


def test_production_shape() -> None:
    e = eth(rpc_url="https://rpc.example.org", chain_id=11155111, contract_address="0x" + "ab" * 20,
            keystore_file="/etc/scb/k.json", password_file="/etc/scb/k.pw", max_fee_gwei=30)
    assert not e.embedded and e.chain_id == 11155111 and e.max_fee_wei == 30 * 10**9
    s = st(system_id=4, holders={"h1": "0x" + "11" * 20, "h2": "0x" + "22" * 20}, period_s=86400)
    assert s.system_id == 4 and list(s.holders) == ["h1", "h2"]
