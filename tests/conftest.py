"""Shared fixtures: paths to the repository, the shared MAM vectors and the node packages."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
JS_DIR = Path(__file__).resolve().parent / "js"


def _find_vectors() -> Path:
    for candidate in (REPO.parent / "shared" / "mam-v0" / "vectors.json", REPO / "tests" / "data" / "mam-v0-vectors.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("MAM v0 vectors not found (expected ../shared/mam-v0/vectors.json)")


@pytest.fixture(scope="session")
def mam_vectors() -> dict[str, Any]:
    return json.loads(_find_vectors().read_text())


def run_node(script: str, payload: Any, timeout: float = 300) -> Any:
    """Run tests/js/<script> with node, JSON on stdin and stdout; a failing script fails the test."""
    node = shutil.which("node")
    assert node, "node is needed for the interop tests"
    proc = subprocess.run(
        [node, str(JS_DIR / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"{script} failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_service(present: bool, what: str) -> None:
    """A test needs a Debian package that `.ci/run` installs (chromium, mosquitto, ...).

    Locally a missing one is a skip with `what` as the reason, so a developer without it still runs the rest; with
    CI=true it fails the test: a CI run that silently skipped would claim coverage it does not have.
    """
    if present:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"CI is set but {what}; .ci/run installs it with apt-get", pytrace=False)
    pytest.skip(what)
