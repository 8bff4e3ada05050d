"""tests.conftest.require_service: a missing service skips locally and fails under CI=true."""
from __future__ import annotations

import pytest

from tests.conftest import require_service


def test_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but mosquitto is missing"):
        require_service(False, "mosquitto is missing")


def test_missing_service_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="mosquitto is missing"):
        require_service(False, "mosquitto is missing")


def test_present_service_does_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require_service(True, "unused")
