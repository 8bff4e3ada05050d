"""docs/scb.example.toml is a configuration every component accepts (it is what operators copy)."""
from __future__ import annotations

import tomllib
from pathlib import Path

from dashboard.settings import dashboard_settings
from energy_manager.settings import load_energy_settings
from mam_client.node.settings import NodeSettings
from mam_client.settings import iota_settings, mam_settings
from scb.config import load_config
from settlement.settings import ethereum_settings, settlement_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "scb.example.toml"


def test_example_loads_in_every_component(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ={})
    assert tomllib.loads(EXAMPLE.read_text())["hub"]["id"] == config.hub["id"]
    energy = load_energy_settings(config)
    assert {m.circuit for m in energy.meters.values()} >= {"generation", "consumption"}
    iota = iota_settings(config)
    assert not iota.embedded_node and iota.pow == "local" and iota.mwm == 14
    assert mam_settings(config).channels["readings"].mode == "restricted"
    assert NodeSettings.from_config(config).port == 14265
    eth = ethereum_settings(config)
    assert eth.rpc_url.startswith("https://")
    settle = settlement_settings(config)
    assert settle.system_id == 4
    assert dashboard_settings(config).port == 8720  # no [dashboard] in the example: the defaults
