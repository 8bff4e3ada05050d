"""Shared fixtures: paths to the repository, the shared MAM vectors and the node packages."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
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


#: ports free_port has handed out in this process
_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers the tests start), and not one this process
    was given before: the kernel may hand out a port just released again, so two ports asked for one after the
    other, before either server binds, could be the same (a hub's chain and node on one port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def errors_at_once(work: Callable[[], None], threads: int = 4, timeout_s: float = 60.0) -> list[BaseException]:
    """Run `work` in `threads` threads at once (as the hub's processes start together); what each raised, and a
    TimeoutError for each still running after `timeout_s` (a hung start must fail the caller's assertion too)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - collected for the caller's assertion
            errors.append(exc)

    started = [threading.Thread(target=run, daemon=True) for _ in range(threads)]  # a hung one must not hold pytest
    for thread in started:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [TimeoutError(f"{thread.name} still running after {timeout_s:g} s") for thread in started
            if thread.is_alive()]
    return errors + hung


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


def wait_while_running(what: str, check: Callable[[], Any], ceiling: float, proc: subprocess.Popen[bytes],
                       log: Path, *, name: str, poll_s: float) -> Any:
    """Poll `check` every `poll_s` until it gives a truthy value, and return it; fail (with the tail of `log`) if
    `proc`, called `name` in the message, exits first or `ceiling` seconds pass. An exception of `check` counts as
    "not yet": what it reads (a database, a schema, a file) may not exist while the processes start."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{name} exited early:\n{log.read_text()[-3000:]}"
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not there yet
            value = None
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
