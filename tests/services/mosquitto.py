"""A real MQTT broker for tests: Debian's mosquitto on a free 127.0.0.1 port with a temporary config.

Interface (import what you need; pytest finds the fixtures once your conftest.py imports them):

- fixtures ``mosquitto`` (session: the executable's path; skips locally or fails under CI=true when missing),
  ``broker`` (a running anonymous broker), ``auth_broker`` (a running broker that wants user "hub", password
  ``AUTH_PASSWORD``), ``tls_files`` (a CA, a server certificate for 127.0.0.1/localhost and a client
  certificate, made with the openssl CLI) and ``tls_broker`` (a running broker with a TLS listener only, serving
  ``tls_files``' server certificate; anonymous, client certificate optional).
- ``Broker(executable, directory, users=..., tls=...)`` for anything else: ``.host``, ``.port``, ``.url``
  (``mqtt://`` or ``mqtts://``), ``start()``, ``stop()`` (a broker that disappears and returns), ``alive()``, and
  use as a context manager (started on enter, stopped on exit).
- ``make_tls_files(directory)`` and ``wait_for(condition, ...)``.

    # your conftest.py
    from tests.services.mosquitto import broker, mosquitto  # noqa: F401  (fixtures)

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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.conftest import free_port, require_service

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
HOST = "127.0.0.1"
AUTH_USER = "hub"
AUTH_PASSWORD = "s3cret-pw"


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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away PKI: one CA that signed a server certificate (for 127.0.0.1 and localhost) and a
    client certificate. Keys are written 0600, as a hub keeps its own."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a second CA that signed nothing here: a client trusting it must refuse the broker


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server and a client certificate made with the openssl CLI (the venv has no `cryptography`).

    The extensions are those Python's default TLS client checks strictly (basicConstraints, key identifiers,
    subjectAltName for the IP address the tests connect to), so the test exercises real verification.
    """
    require_service(shutil.which("openssl") is not None, "openssl is not installed (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                 "-subj", f"/CN=SCB test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    leaves = {
        "server": ("/CN=localhost", "serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"),
        "client": ("/CN=scb-hub", "clientAuth", ""),
    }
    for name, (subject, usage, san) in leaves.items():
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n{san}")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(ca_cert=directory / "ca.crt", server_cert=directory / "server.crt",
                    server_key=directory / "server.key", client_cert=directory / "client.crt",
                    client_key=directory / "client.key", other_ca_cert=directory / "other-ca.crt")


@dataclass(frozen=True)
class BrokerTls:
    """The broker's TLS listener: `files`' server certificate; `require_client_cert` refuses clients without one
    signed by `files`' CA."""

    files: TlsFiles
    require_client_cert: bool = False


class Broker:
    """One mosquitto process; stop() and start() again play a broker that disappears and returns.

    With `tls` its only listener speaks TLS (so a client that tries plain MQTT fails, as in the field); with
    `users` it refuses anonymous clients and checks `mosquitto_passwd`-hashed passwords.
    """

    def __init__(self, executable: str, directory: Path, *, users: dict[str, str] | None = None,
                 tls: BrokerTls | None = None) -> None:
        self.executable = executable
        self.directory = directory
        self.host = HOST
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {HOST}", "persistence false", "log_dest stderr"]
        if tls is not None:
            lines += [f"cafile {tls.files.ca_cert}", f"certfile {tls.files.server_cert}",
                      f"keyfile {tls.files.server_key}",
                      f"require_certificate {'true' if tls.require_client_cert else 'false'}"]
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
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

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
            with socket.create_connection((self.host, self.port), timeout=1):
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

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@pytest.fixture(scope="session")
def mosquitto() -> str:
    executable = find_mosquitto()
    require_service(executable is not None, "mosquitto is not installed (apt-get install mosquitto)")
    assert executable is not None
    return executable


@pytest.fixture()
def broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    with Broker(mosquitto, tmp_path) as b:
        yield b


@pytest.fixture()
def auth_broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    with Broker(mosquitto, tmp_path, users={AUTH_USER: AUTH_PASSWORD}) as b:
        yield b


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def tls_broker(mosquitto: str, tls_files: TlsFiles, tmp_path: Path) -> Iterator[Broker]:
    with Broker(mosquitto, tmp_path, tls=BrokerTls(tls_files)) as b:
        yield b
