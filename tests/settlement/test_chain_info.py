"""`scb chain info` against anvil: the system as the contract holds it (settlement.solar_property, one block), with
the hub's party names, and a clear error for a system the contract does not have."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from settlement.chain import dev_account
from settlement.cli import cmd_chain_info
from scb.errors import UsageError
from tests.settlement.conftest import START_MS, Hub, write_toml

HOUR_MS = 3600_000


def chain_info(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert cmd_chain_info(argparse.Namespace(config=str(config))) == 0
    return capsys.readouterr().out


def test_chain_info_shows_the_system_and_every_holder(hub: Hub, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    hub.run_until(START_MS + 2 * HOUR_MS + 20 * 60_000)
    assert hub.settle().settled == [1, 2]
    out = chain_info(write_toml(hub.config, tmp_path / "scb.toml"), capsys)
    lines = out.splitlines()
    assert re.fullmatch(rf"chain 31337, SolarProperty {hub.system.contract}, system 1 "
                        r"\(block \d+, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", lines[0]), out
    assert f"beneficiary {dev_account(0).address}, 3 holders, registered 20" in lines[1], out
    # [settlement.demo] of the test configuration; the demo's total value (1 ether) and no grid share
    assert lines[2] == ("  price 1000000000000000 wei/kWh, total value 1000000000000000000 wei, grace 7200 s, "
                        "grid share 0 bps"), out
    # period 2 is [01:00, 02:00) of the first community day
    assert lines[3] == "  last period 2 (ended 2030-01-01T02:00:00Z)", out
    holders = lines[4:]
    assert len(holders) == 3, out
    for i, (party, share) in enumerate((("h1", 3334), ("h2", 3333), ("h3", 3333)), start=1):
        line = holders[i - 1].split()
        assert line[:3] == [party, dev_account(i).address, "paying"], out
        assert f"share {share} bps" in holders[i - 1] and "-> supply" in holders[i - 1], out


def test_chain_info_of_a_system_the_contract_does_not_have(hub: Hub, tmp_path: Path) -> None:
    config = hub.config
    config.data["settlement"].update({"system_id": 7, "holders": {"h1": dev_account(1).address}})
    with pytest.raises(UsageError, match=f"system 7 is not registered on SolarProperty {hub.system.contract}"):
        cmd_chain_info(argparse.Namespace(config=str(write_toml(config, tmp_path / "scb.toml"))))
