"""What `scb run` starts: the embedded defaults start a local chain and tangle node; a configuration with an
external node and chain starts neither."""
from __future__ import annotations

from pathlib import Path

from scb.config import Config, load_config
from hub.processes import plan, process_status, write_process_file

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "scb.example.toml"


def test_embedded_defaults_start_everything(tmp_path: Path) -> None:
    names = [c.name for c in plan(Config(data={"hub": {"data_dir": str(tmp_path)}}), None)]
    assert names == ["anvil", "tangle-node", "energy-manager", "mam-client", "settlement", "dashboard",
                     "demo-households"]


def test_external_node_and_chain_start_neither(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ={"SCB_DATA_DIR": str(tmp_path)})
    children = plan(config, str(EXAMPLE))
    assert [c.name for c in children] == ["energy-manager", "mam-client", "settlement", "dashboard"]
    assert all(c.argv[-3:-1] == ["--config", str(EXAMPLE)] for c in children)
    assert all(c.log_path.parent == tmp_path / "logs" for c in children)


def test_process_table_reports_what_is_running(tmp_path: Path) -> None:
    children = plan(Config(data={"hub": {"data_dir": str(tmp_path)}}), None)
    write_process_file(tmp_path, children)  # nothing started: no pids
    assert {p["name"] for p in process_status(tmp_path)} == {c.name for c in children}
    assert not any(p["running"] for p in process_status(tmp_path))
    assert process_status(tmp_path / "elsewhere") == []
