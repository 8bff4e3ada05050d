"""A real MQTT broker for the driver tests: Debian's mosquitto on a free 127.0.0.1 port with a temporary config.

Locally a missing mosquitto is a skip with its reason; with CI=true it is a failure, because .ci/run installs it
and a CI run that silently skipped the broker tests would claim coverage it does not have.
mosquitto refuses to run as root unless its config says `user root` (it would otherwise switch to the
"mosquitto" user, who cannot read the test's temporary files): the config says so when the tests run as root.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require_service

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")




def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in MOSQUITTO_CANDIDATES if os.access(c, os.X_OK)), None)


def wait_for(condition: Callable[[], Any], *, alive: Callable[[], bool] = lambda: True,
             timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy. The timeout is a backstop for a hung test, not a performance bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if not alive():
            raise AssertionError(f"{what}: the broker exited")
        time.sleep(0.02)
    raise AssertionError(f"{what}: not met in {timeout:g} s")


class Broker:
    """One mosquitto process; stop() and start() again play a broker that disappears and returns."""

    def __init__(self, executable: str, directory: Path, *, users: dict[str, str] | None = None) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if users:
            passwd = directory / "passwd"
            passwd.touch(mode=0o600)
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for user, password in users.items():
                subprocess.run([tool, "-b", str(passwd), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:
            lines.append("user root")
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.executable, "-c", str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_for(self._accepts, alive=self.alive, what=f"mosquitto listening on {self.port} "
                 f"(log: {self.log})")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def mosquitto() -> str:
    executable = find_mosquitto()
    require_service(executable is not None, "mosquitto is not installed (apt-get install mosquitto)")
    assert executable is not None
    return executable


@pytest.fixture()
def broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto, tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def auth_broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto, tmp_path, users={"hub": "s3cret-pw"})
    b.start()
    try:
        yield b
    finally:
        b.stop()
