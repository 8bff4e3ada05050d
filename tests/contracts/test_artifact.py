"""The committed artifact is exactly what a fresh compile produces, and load_artifact finds it."""
from __future__ import annotations

import json
import subprocess

from settlement.contract_artifact import ARTIFACT_PATH, load_artifact
from tests.conftest import REPO


def test_fresh_compile_reproduces_the_committed_artifact_byte_for_byte() -> None:
    proc = subprocess.run(
        ["node", str(REPO / "contracts" / "compile.js"), "--stdout"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    committed = (REPO / "contracts" / "build" / "SolarProperty.json").read_text(encoding="utf-8")
    assert proc.stdout == committed, "contracts/build/SolarProperty.json is stale: run `node contracts/compile.js`"


def test_load_artifact() -> None:
    art = load_artifact()
    assert ARTIFACT_PATH == REPO / "contracts" / "build" / "SolarProperty.json"
    assert art["contractName"] == "SolarProperty"
    assert art["compiler"]["version"].startswith("0.8.37+")
    assert art["settings"]["evmVersion"] == "cancun"
    assert art["bytecode"].startswith("0x") and art["deployedBytecode"].startswith("0x")
    assert len(art["deployedBytecode"]) // 2 - 1 <= 24_576, "EIP-170 contract size limit"
    names = {e.get("name") for e in art["abi"] if e["type"] == "function"}
    expected = {
        "registerSystem", "settle", "pay", "deposit", "withdrawDeposit", "withdraw", "repossess",
        "isInGoodStanding", "supplyStatus", "holderInfo", "holderList", "systemInfo", "periodInfo",
        "verifyReading", "hubRole", "withdrawable",
        "VERSION", "cancelPeriod", "assignShare", "setBeneficiary",
    }
    assert expected <= names
    art["abi"].clear()  # callers get a copy
    assert load_artifact()["abi"]
    # the loader needs no compiler and no node: it is plain JSON
    assert json.loads(ARTIFACT_PATH.read_text())["abi"] == load_artifact()["abi"]


def test_the_version_1_artifact_is_kept() -> None:
    """Version 1 stays committed so that the hub can read a system that stays on it (settlement.solar_property)."""
    v1, v2 = load_artifact(1), load_artifact(2)
    assert v1["contractName"] == v2["contractName"] == "SolarProperty"
    v1_functions = {e["name"] for e in v1["abi"] if e["type"] == "function"}
    assert "VERSION" not in v1_functions and "cancelPeriod" not in v1_functions
    assert v1["deployedBytecode"] != v2["deployedBytecode"]
    import pytest

    from settlement.contract_artifact import ArtifactError

    with pytest.raises(ArtifactError, match="version 3"):
        load_artifact(3)
