"""Layers point one way (docs/architecture.md "Layers"), checked on every import statement of the project:

* plumbing (`scb`) imports no other package of the project;
* a component (`energy_manager`, `mam_client`, `settlement`) never imports the application layer (`hub`), the
  dashboard, or another component's `cli` or `service` module;
* nothing imports the front ends' modules except the `scb` command table (by name, in hub.cli).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("scb", "hub", "energy_manager", "mam_client", "settlement", "dashboard", "fleet", "home_assistant")
COMPONENTS = ("energy_manager", "mam_client", "settlement")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def violations(package: str, allowed: callable) -> list[str]:  # type: ignore[valid-type]
    out = []
    for path in modules(package):
        for line, name in imports(path):
            top = name.split(".")[0]
            if top in PROJECT and not allowed(name):
                out.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return out


def test_plumbing_imports_no_component() -> None:
    assert violations("scb", lambda name: name.split(".")[0] == "scb") == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_do_not_reach_up_or_into_each_others_cli_and_service(component: str) -> None:
    def allowed(name: str) -> bool:
        parts = name.split(".")
        if parts[0] in ("hub", "dashboard", "home_assistant", "fleet"):  # the application layer and its front ends
            return False
        if parts[0] != component and parts[0] in COMPONENTS and {"cli", "service"} & set(parts[1:]):
            return False
        return True

    assert violations(component, allowed) == []


def test_the_dashboard_uses_the_application_layer_not_component_clis() -> None:
    def allowed(name: str) -> bool:
        parts = name.split(".")
        return not (parts[0] in COMPONENTS and {"cli", "service"} & set(parts[1:]))

    assert violations("dashboard", allowed) == []


def test_the_application_layer_does_not_import_the_fleet_server() -> None:
    """hub/ (the fleet uploader included) never imports the fleet server: the wire format both sides share lives
    in hub.fleet.protocol, below the server."""
    assert violations("hub", lambda name: name.split(".")[0] != "fleet") == []


def test_the_fleet_server_uses_the_application_layer_not_component_clis() -> None:
    def allowed(name: str) -> bool:
        parts = name.split(".")
        return not (parts[0] in COMPONENTS and {"cli", "service"} & set(parts[1:])) and parts[0] != "dashboard"

    assert violations("fleet", allowed) == []


def test_the_check_sees_imports() -> None:
    """The checker itself: a file importing upward is reported (so the tests above can fail)."""
    sample = REPO / "tests" / "data" / "layers_sample.py"
    assert ("settlement.cli" in dict((n, l) for l, n in imports(sample)))
