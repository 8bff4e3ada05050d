"""[iota], [mam] and [tangle_node]: typed checks (no coercion), errors that name the key, environment overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mam_client.node.settings import NodeSettings
from mam_client.settings import iota_settings, mam_settings
from scb.config import Config, load_config
from scb.errors import ConfigError


def test_embedded_defaults(tmp_path: Path) -> None:
    iota = iota_settings(Config())
    assert iota.embedded_node and iota.node_url == "http://127.0.0.1:14265" and iota.mwm == 9 and iota.pow == "remote"
    mam = mam_settings(Config(data={"hub": {"data_dir": str(tmp_path)}}))
    assert mam.api_port == 8710 and list(mam.channels) == ["readings"]
    readings = mam.channels["readings"]
    assert readings.mode == "restricted" and readings.security == 2 and readings.count == 1
    assert readings.seed_file == tmp_path.resolve() / "secrets" / "mam-readings.seed"
    node = NodeSettings.from_config(Config(data={"hub": {"data_dir": str(tmp_path)}}))
    assert node.port == 14265 and node.remote_pow is True and node.db == tmp_path.resolve() / "tangle.sqlite3"


def test_the_embedded_node_url_follows_tangle_node() -> None:
    iota = iota_settings(Config(data={"tangle_node": {"host": "127.0.0.2", "port": 15000}}))
    assert iota.node_url == "http://127.0.0.2:15000" and iota.embedded_node
    external = iota_settings(Config(data={"iota": {"node_url": "http://10.0.0.5:14265"},
                                          "tangle_node": {"port": 0}}))  # not used: not checked
    assert external.node_url == "http://10.0.0.5:14265" and not external.embedded_node


@pytest.mark.parametrize(("section", "values", "message"), [
    ("iota", {"mwm": 9.7}, "iota.mwm must be an integer from 1 to 27, not 9.7"),
    ("iota", {"mwm": True}, "iota.mwm must be an integer from 1 to 27, not true"),
    ("iota", {"mwm": 28}, "iota.mwm must be an integer from 1 to 27, not 28"),
    ("iota", {"depth": "3"}, 'iota.depth must be an integer from 1 to 15, not "3"'),
    ("iota", {"pow_threads": -1}, "iota.pow_threads must be an integer from 0 to 64, not -1"),
    ("iota", {"pow": "gpu"}, 'iota.pow must be one of "remote", "local", not "gpu"'),
    ("iota", {"tag": "scb"}, 'iota.tag must be 1 to 27 trytes (9 and A-Z), not "scb"'),
    ("iota", {"timeout_s": 0}, "iota.timeout_s must be a number from 0.1 to 600, not 0"),
    ("iota", {"node_url": "10.0.0.5:14265"}, 'iota.node_url must be an http or https URL (or "" for the default), '
                                             'not "10.0.0.5:14265"'),
    ("iota", {"nodeurl": "x"}, "unknown setting iota.nodeurl"),
    ("mam", {"api_port": 0}, "mam.api_port must be an integer from 1 to 65535, not 0"),
    ("mam", {"api_port": 65536}, "mam.api_port must be an integer from 1 to 65535, not 65536"),
    ("mam", {"api_port": 8710.0}, "mam.api_port must be an integer from 1 to 65535, not 8710.0"),
    ("mam", {"api_host": ""}, 'mam.api_host must be a host name or address, not ""'),
    ("mam", {"poll_interval_s": "1"}, 'mam.poll_interval_s must be a number from 0.01 to 3600, not "1"'),
    ("mam", {"backoff_initial_s": 10, "backoff_max_s": 5}, "mam.backoff_max_s must be a number from 10 to 86400"),
    ("mam", {"channels": "readings"}, '[mam.channels] must be a table, not "readings"'),
    ("mam", {"channels": {"r": {"security": True}}}, "mam.channels.r.security must be an integer from 1 to 3, not true"),
    ("mam", {"channels": {"r": {"security": 4}}}, "mam.channels.r.security must be an integer from 1 to 3, not 4"),
    ("mam", {"channels": {"r": {"count": 3}}}, "mam.channels.r.count must be a power of two from 1 to 1024, not 3"),
    ("mam", {"channels": {"r": {"count": 2048}}}, "mam.channels.r.count must be an integer from 1 to 1024"),
    ("mam", {"channels": {"r": {"mode": "secret"}}}, 'mam.channels.r.mode must be one of "public", "private", '
                                                     '"restricted", not "secret"'),
    ("mam", {"channels": {"r": {"mode": "public", "side_key_file": "/k"}}}, "mam.channels.r.side_key_file is only"),
    ("mam", {"channels": {"r": {"seed_file": 1}}}, 'mam.channels.r.seed_file must be a path (or "" for the default)'),
    ("mam", {"channels": {"r": {"sceurity": 2}}}, "unknown setting mam.channels.r.sceurity"),
    ("mam", {"channels": {"r b": {}}}, 'channel name "r b" in [mam.channels]'),
    ("tangle_node", {"port": 0}, "tangle_node.port must be an integer from 1 to 65535, not 0"),
    ("tangle_node", {"port": "14265"}, 'tangle_node.port must be an integer from 1 to 65535, not "14265"'),
    ("tangle_node", {"host": ""}, 'tangle_node.host must be a host name or address, not ""'),
    ("tangle_node", {"mwm": 9.5}, "tangle_node.mwm must be an integer from 0 to 27, not 9.5"),
    ("tangle_node", {"remote_pow": "false"}, 'tangle_node.remote_pow must be true or false, not "false"'),
    ("tangle_node", {"mwm": 14, "max_attach_mwm": 9}, "tangle_node.max_attach_mwm must be an integer from 14 to 27"),
    ("tangle_node", {"db": 5}, 'tangle_node.db must be a path (or "" for the default), not 5'),
])
def test_bad_values_name_the_key(section: str, values: dict[str, Any], message: str) -> None:
    config = Config(data={section: values})
    load = {"iota": iota_settings, "mam": mam_settings, "tangle_node": NodeSettings.from_config}[section]
    with pytest.raises(ConfigError) as err:
        load(config)
    assert str(err.value).startswith(message)


def test_good_values_load() -> None:
    config = Config(data={
        "iota": {"node_url": "https://node.example.org:443", "mwm": 14, "depth": 15, "pow": "local", "tag": "PATIO9",
                 "timeout_s": 5},
        "mam": {"api_host": "0.0.0.0", "api_port": 9000, "backoff_initial_s": 2, "backoff_max_s": 2,
                "channels": {"a": {"mode": "public", "security": 1, "count": 4}, "b-2": {"mode": "private"}}},
    })
    iota = iota_settings(config)
    assert (iota.mwm, iota.depth, iota.pow, iota.tag, iota.timeout_s) == (14, 15, "local", "PATIO9", 5.0)
    mam = mam_settings(config)
    assert mam.api_host == "0.0.0.0" and mam.api_port == 9000 and mam.backoff_max_s == 2.0
    assert mam.channels["a"].count == 4 and mam.channels["a"].side_key_file is None
    assert mam.channels["b-2"].mode == "private"


def test_a_node_built_in_code_may_take_port_0() -> None:
    assert NodeSettings(db=Path("x.sqlite3"), port=0).port == 0  # tests: the OS picks a free port
    with pytest.raises(ConfigError, match="tangle_node.port must be an integer from 0 to 65535, not 70000"):
        NodeSettings(db=Path("x.sqlite3"), port=70000)


def test_environment_overrides() -> None:
    config = load_config(environ={"SCB_IOTA__MWM": "14", "SCB_IOTA__POW": "local", "SCB_MAM__API_PORT": "8711",
                                  "SCB_MAM__CHANNELS__READINGS__MODE": "public",
                                  "SCB_TANGLE_NODE__REMOTE_POW": "false", "SCB_TANGLE_NODE__PORT": "15265"})
    assert iota_settings(config).mwm == 14 and iota_settings(config).node_url == "http://127.0.0.1:15265"
    assert mam_settings(config).api_port == 8711 and mam_settings(config).channels["readings"].mode == "public"
    assert NodeSettings.from_config(config).remote_pow is False
    with pytest.raises(ConfigError, match=r"^iota\.mwm must be an integer from 1 to 27, not 9\.7$"):
        iota_settings(load_config(environ={"SCB_IOTA__MWM": "9.7"}))
    with pytest.raises(ConfigError, match=r'^mam\.api_port must be an integer from 1 to 65535, not "http"$'):
        mam_settings(load_config(environ={"SCB_MAM__API_PORT": "http"}))
