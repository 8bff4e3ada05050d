"""Every top-level section is owned by one settings module (its SECTIONS); any other section is refused.

The `scb` command calls `Config.check_sections` with the SECTIONS of every component; this test gathers them the
same way and checks that what the hub ships (embedded defaults, docs/scb.example.toml, the examples in
docs/configuration.md) passes while a typo or a section nobody reads does not.
"""
from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

from scb.config import Config, load_config
from scb.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs"
from hub.settings import SETTINGS_MODULES  # the list `scb` checks with


def all_sections() -> list[str]:
    sections: list[str] = []
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        owned = module.SECTIONS
        assert isinstance(owned, tuple) and owned and all(isinstance(s, str) and s for s in owned), name
        sections.extend(owned)
    return sections


def test_each_section_has_one_owner() -> None:
    sections = all_sections()
    assert len(sections) == len(set(sections)), f"a section is claimed twice: {sorted(sections)}"
    assert {"hub", "database", "energy", "iota", "mam", "tangle_node", "ethereum", "settlement",
            "dashboard"} <= set(sections)


def test_embedded_defaults_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./scb.toml
    load_config(environ={"SCB_DATA_DIR": str(tmp_path)}).check_sections(all_sections())


def test_the_example_configuration_passes() -> None:
    config = load_config(DOCS / "scb.example.toml", environ={})
    config.check_sections(all_sections())


def test_the_examples_in_the_configuration_docs_pass() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (DOCS / "configuration.md").read_text(), re.S)
    assert len(blocks) >= 5
    for block in blocks:
        Config(data=tomllib.loads(block)).check_sections(all_sections())


def test_a_misspelt_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scb.toml"
    path.write_text("[energi]\nsample_interval_s = 5\n")
    with pytest.raises(ConfigError, match=r"unknown section \[energi\] in .*scb\.toml \(did you mean \[energy\]\?\)"):
        load_config(path, environ={}).check_sections(all_sections())


def test_a_section_nobody_reads_is_refused_from_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[weather\] set by environment variable SCB_WEATHER__URL"):
        load_config(environ={"SCB_WEATHER__URL": "x"}).check_sections(all_sections())
