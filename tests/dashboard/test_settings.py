"""[dashboard]: defaults, typed checks that name the key, environment overrides."""
from __future__ import annotations

from typing import Any

import pytest

from dashboard.settings import dashboard_settings
from scb.config import Config, load_config
from scb.errors import ConfigError


def test_defaults_listen_on_loopback() -> None:
    s = dashboard_settings(Config())
    assert (s.host, s.port, s.chart_bucket, s.chart_points) == ("127.0.0.1", 8720, "window", 48)


@pytest.mark.parametrize(("values", "message"), [
    ({"port": 0}, "dashboard.port must be an integer from 1 to 65535, not 0"),
    ({"port": "8720"}, 'dashboard.port must be an integer from 1 to 65535, not "8720"'),
    ({"port": 8720.5}, "dashboard.port must be an integer from 1 to 65535, not 8720.5"),
    ({"host": " "}, 'dashboard.host must be a host name or address, not " "'),
    ({"refresh_s": 0.1}, "dashboard.refresh_s must be a number from 0.5 to 3600, not 0.1"),
    ({"refresh_s": True}, "dashboard.refresh_s must be a number from 0.5 to 3600, not true"),
    ({"chart_bucket": "day"}, 'dashboard.chart_bucket must be one of "window", "hour", not "day"'),
    ({"chart_points": 48.0}, "dashboard.chart_points must be an integer from 2 to 500, not 48.0"),
    ({"chain_timeout_s": 121}, "dashboard.chain_timeout_s must be a number from 0.1 to 120, not 121"),
    ({"prot": 1}, "unknown setting dashboard.prot"),
])
def test_bad_values_name_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        dashboard_settings(Config(data={"dashboard": values}))
    assert str(err.value).startswith(message)


def test_environment_overrides() -> None:
    s = dashboard_settings(load_config(environ={"SCB_DASHBOARD__HOST": "0.0.0.0", "SCB_DASHBOARD__PORT": "8080",
                                                "SCB_DASHBOARD__CHART_BUCKET": "hour"}))
    assert (s.host, s.port, s.chart_bucket) == ("0.0.0.0", 8080, "hour")
