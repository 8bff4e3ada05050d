"""scb.settings (the checks every settings module uses) and scb.config (file, environment, sections)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from scb import settings as check
from scb.config import Config, load_config
from scb.errors import ConfigError


def error_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(ConfigError) as err:
        fn(*args, **kw)
    return str(err.value)


# ---- each kind of value ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [
    (9.7, "9.7"), (9.0, "9.0"), (True, "true"), ("9", '"9"'), (28, "28"), (0, "0"), ([9], "[9]"),
])
def test_integer_refuses_floats_booleans_strings_and_out_of_range(value: Any, shown: str) -> None:
    assert error_of(check.integer, "iota.mwm", value, 1, 27) == f"iota.mwm must be an integer from 1 to 27, not {shown}"


def test_integer_accepts_an_integer_in_range() -> None:
    assert check.integer("iota.mwm", 14, 1, 27) == 14 and isinstance(check.integer("x.y", 1, 1, 27), int)
    assert "at least 0" in error_of(check.integer, "x.y", -1, 0)


@pytest.mark.parametrize(("value", "shown"), [
    (False, "false"), ("1.5", '"1.5"'), (float("nan"), "nan"), (float("inf"), "inf"), (0.05, "0.05"), (601, "601"),
])
def test_number_refuses_non_numbers_non_finite_and_out_of_range(value: Any, shown: str) -> None:
    assert error_of(check.number, "iota.timeout_s", value, 0.1, 600) == \
        f"iota.timeout_s must be a number from 0.1 to 600, not {shown}"


def test_number_accepts_integers_and_floats_and_says_exclusive_bounds() -> None:
    assert check.number("a.b", 5, 0.1, 600) == 5.0 and isinstance(check.number("a.b", 5, 0.1, 600), float)
    assert check.number("a.b", 0.5, 0, low_exclusive=True) == 0.5
    assert error_of(check.number, "a.b", 0, 0, 10, low_exclusive=True) == \
        "a.b must be a number greater than 0 and at most 10, not 0"


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "yes"])
def test_boolean_is_only_true_or_false(value: Any) -> None:
    assert error_of(check.boolean, "tangle_node.remote_pow", value).startswith(
        "tangle_node.remote_pow must be true or false, not ")
    assert check.boolean("x.y", False) is False


def test_choice_is_exact() -> None:
    assert check.choice("iota.pow", "local", ("remote", "local")) == "local"
    assert error_of(check.choice, "iota.pow", "Local", ("remote", "local")) == \
        'iota.pow must be one of "remote", "local", not "Local"'
    assert "not 1" in error_of(check.choice, "iota.pow", 1, ("remote", "local"))


@pytest.mark.parametrize("value", [0, 65536, -1, "8080", 8080.0, True])
def test_port_is_1_to_65535(value: Any) -> None:
    assert error_of(check.port, "mam.api_port", value).startswith("mam.api_port must be an integer from 1 to 65535")
    assert check.port("mam.api_port", 65535) == 65535 and check.port("mam.api_port", 1) == 1


@pytest.mark.parametrize("value", ["ftp://x", "http://", "localhost:14265", "http://:80", "http://a b", 5, "https//x"])
def test_url_needs_a_scheme_and_a_host(value: Any) -> None:
    assert error_of(check.url, "iota.node_url", value).startswith("iota.node_url must be an http or https URL")


def test_url_accepts_http_urls_and_empty_only_when_allowed() -> None:
    assert check.url("iota.node_url", " http://10.0.0.5:14265 ") == "http://10.0.0.5:14265"
    assert check.url("e.rpc_url", "https://user@rpc.example.org/v1") == "https://user@rpc.example.org/v1"
    assert check.url("iota.node_url", "", allow_empty=True) == ""
    assert error_of(check.url, "iota.node_url", "") == 'iota.node_url must be an http or https URL, not ""'


def test_path() -> None:
    assert check.path("hub.data_dir", "~/scb") == Path.home() / "scb"
    assert check.path("ethereum.keystore_file", "", allow_empty=True) is None
    assert error_of(check.path, "hub.data_dir", "") == 'hub.data_dir must be a path, not ""'
    assert error_of(check.path, "hub.data_dir", 5) == "hub.data_dir must be a path, not 5"


def test_string_and_host() -> None:
    assert check.string("a.b", "x", pattern=re.compile("[a-z]+")) == "x"
    assert error_of(check.string, "a.b", "X", pattern=re.compile("[a-z]+"), expected="lower-case letters") == \
        'a.b must be lower-case letters, not "X"'
    assert error_of(check.string, "a.b", "", allow_empty=False) == 'a.b must be a string, not ""'
    assert error_of(check.string, "a.b", 7) == "a.b must be a string, not 7"
    assert check.host("d.host", " 0.0.0.0 ") == "0.0.0.0"
    for bad in ("", "  ", "a b", 1):
        assert error_of(check.host, "d.host", bad).startswith("d.host must be a host name or address")


def test_lists_name_the_element() -> None:
    assert check.string_list("energy.households", ["h1", "h2"]) == ["h1", "h2"]
    assert error_of(check.string_list, "energy.households", "h1") == \
        'energy.households must be a list of strings, not "h1"'
    assert error_of(check.string_list, "energy.households", ["h1", 2]) == \
        "energy.households[1] must be a string, not 2"
    assert "h1 repeated" in error_of(check.string_list, "energy.households", ["h1", "h1"], unique=True)
    assert "not []" in error_of(check.string_list, "energy.households", [], allow_empty=False)
    assert check.integer_list("s.shares_bps", [1, 2], 1, 10) == [1, 2]
    assert error_of(check.integer_list, "s.shares_bps", [1, 2.5], 1, 10) == \
        "s.shares_bps[1] must be an integer from 1 to 10, not 2.5"


def test_tables_and_known_keys() -> None:
    assert check.table("mam.channels", {"a": {}}) == {"a": {}}
    assert error_of(check.table, "mam.channels", "readings") == '[mam.channels] must be a table, not "readings"'
    check.known_keys("m.c.r", {"mode": 1}, ("mode", "security"))
    assert error_of(check.known_keys, "m.c.r", {"mdoe": 1}, ("mode", "security")) == \
        "unknown setting m.c.r.mdoe; known: mode, security"


def test_a_long_value_is_shortened_in_the_message() -> None:
    message = error_of(check.integer, "a.b", "x" * 500, 1, 2)
    assert len(message) < 150 and message.endswith("...")


# ---- [hub] and [database] ----------------------------------------------------------------------------------


def test_hub_and_database_defaults_and_errors(tmp_path: Path) -> None:
    config = Config()
    assert config.hub == {"id": "scb-demo-hub", "data_dir": Path("data"), "log_level": "INFO"}
    assert config.sqlite_synchronous == "FULL"
    assert Config(data={"database": {"synchronous": "normal"}}).sqlite_synchronous == "NORMAL"
    assert Config(data={"hub": {"data_dir": str(tmp_path)}}).database_url == f"sqlite:///{tmp_path / 'scb.sqlite3'}"
    for data, message in (
        ({"hub": {"log_level": "loud"}}, 'hub.log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, '
                                         'not "loud"'),
        ({"hub": {"id": ""}}, 'hub.id must be a hub id of 1 to 64 characters, not ""'),
        ({"hub": {"data_dir": 5}}, "hub.data_dir must be a path, not 5"),
        ({"hub": {"dtaa_dir": "x"}}, "unknown setting hub.dtaa_dir"),
    ):
        assert error_of(lambda: Config(data=data).hub).startswith(message)
    assert error_of(lambda: Config(data={"database": {"synchronous": "fast"}}).sqlite_synchronous) == \
        'database.synchronous must be one of OFF, NORMAL, FULL, EXTRA, not "fast"'
    assert error_of(lambda: Config(data={"database": {"url": 5}}).database_url).startswith("database.url must be")


# ---- the environment ---------------------------------------------------------------------------------------


def test_environment_values_are_typed_as_toml(tmp_path: Path) -> None:
    config = load_config(environ={"SCB_MAM__API_PORT": "8711", "SCB_IOTA__POW": "local",
                                  "SCB_TANGLE_NODE__REMOTE_POW": "false", "SCB_HUB__ID": '"7"',
                                  "SCB_ENERGY__HOUSEHOLDS": '["a", "b"]', "SCB_DATA_DIR": str(tmp_path)})
    assert config.data["mam"]["api_port"] == 8711 and config.data["iota"]["pow"] == "local"
    assert config.data["tangle_node"]["remote_pow"] is False and config.hub["id"] == "7"
    assert config.data["energy"]["households"] == ["a", "b"] and config.data_dir == tmp_path.resolve()
    assert config.origin("mam") == "set by environment variable SCB_MAM__API_PORT"
    assert config.origin("hub") == "set by environment variables SCB_HUB__ID, SCB_DATA_DIR"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scb.toml"
    path.write_text('[hub]\nid = "from-file"\n[database]\nsynchronous = "NORMAL"\n')
    config = load_config(path, environ={"SCB_HUB__ID": "from-env"})
    assert config.hub["id"] == "from-env" and config.sqlite_synchronous == "NORMAL"
    assert config.origin("hub") == f"in {path} and set by environment variable SCB_HUB__ID"
    assert config.origin("database") == f"in {path}"


# ---- unknown sections --------------------------------------------------------------------------------------


def test_an_unknown_section_in_the_file_is_refused_with_the_closest_known_one(tmp_path: Path) -> None:
    path = tmp_path / "scb.toml"
    path.write_text("[energi]\nsample_interval_s = 5\n")
    config = load_config(path, environ={})
    assert error_of(config.check_sections, ["hub", "database", "energy", "iota"]) == \
        f"unknown section [energi] in {path} (did you mean [energy]?)"


def test_an_unknown_section_from_the_environment_names_the_variable() -> None:
    config = load_config(environ={"SCB_MQTT__URL": "x"})
    assert error_of(config.check_sections, ["hub", "database", "energy"]) == \
        "unknown section [mqtt] set by environment variable SCB_MQTT__URL (known sections: database, energy, hub)"


def test_every_unknown_section_is_named_and_known_ones_pass(tmp_path: Path) -> None:
    path = tmp_path / "scb.toml"
    path.write_text('stray = 1\n[hub]\nid = "h"\n[dashbord]\nport = 1\n')
    config = load_config(path, environ={})
    message = error_of(config.check_sections, ["hub", "dashboard"])
    assert "unknown section [dashbord]" in message and "did you mean [dashboard]?" in message
    assert f"unknown top-level setting stray in {path}" in message
    load_config(environ={"SCB_HUB__ID": "x"}).check_sections(["hub"])
    Config().check_sections([])
