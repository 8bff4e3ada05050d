"""A real PostgreSQL server for the tests: Debian's `postgresql` package, one server per test session.

Interface (import the fixtures into a test module, or into a conftest.py, so pytest sees them)::

    from tests.services.postgres import database_url, postgres_server, postgresql_url  # noqa: F401 (fixtures)

    def test_something(postgresql_url: str) -> None:      # a fresh, empty database for this test
        engine = sqlalchemy.create_engine(postgresql_url)  # "postgresql+psycopg://scb_admin@127.0.0.1:PORT/t_..."

    def test_other(postgres_server: PostgresServer) -> None:
        url = postgres_server.create_database()           # another fresh database (a module fixture can do this)
        url = postgres_server.create_database(template="t_ab12")  # a copy of a prepared one (CREATE ... TEMPLATE)
        postgres_server.create_role("hub", "s3cret")      # a login role that needs its password (scram-sha-256)
        postgres_server.psql("SELECT 1")                  # run SQL as the superuser, in database "postgres"
        postgres_server.drop_database(database_name(url)) # even with connections still open (WITH FORCE)
        postgres_server.stop(); postgres_server.start()   # down and back on the same port and data (restart())

- `postgres_server` (session scope): the running server. `.host`, `.port`, `.superuser` ("scb_admin"),
  `.url(database, user=None, password=None)` builds a `postgresql+psycopg://` URL; `.version_num` (e.g. 150018).
  A test that stops the server starts it again before it ends (the next tests share it).
- `postgresql_url` (function scope): `postgres_server.create_database()`; the database is dropped after the test.
- `database_url` (function scope, parametrised "sqlite"/"postgresql"): an empty database on each backend, for the
  tests that must hold on both; `backend(url)` says which one a test got.
- Authentication: the superuser `scb_admin` connects over 127.0.0.1 without a password (trust, only for that role),
  every other role needs its password (scram-sha-256), so a test of password handling can fail.
- Missing PostgreSQL binaries: `tests.conftest.require_service` (a skip locally, a failure with CI=true).

Why the set-up is what it is:
- PostgreSQL refuses to run as root, and the suite runs as root here and in CI. When we are root the server runs
  as an unprivileged system user (`$SCB_TEST_PG_USER`, else Debian's `postgres`, else a `scb-pgtest` system user
  created with useradd, else `nobody`), and the temporary directory is handed to that user.
- One server per session (initdb costs about a second, start-up another), one cheap database per test: the
  singleton below survives pytest registering the session fixture once per importing module.
- `fsync=off` and friends: durability of the test server itself is not under test (the hub's processes are killed
  in some tests; this server is only ever stopped cleanly), and fsync on a shared 2-core CI machine is the slowest part of CREATE DATABASE.
"""
from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require_service

SUPERUSER = "scb_admin"
# Generous ceilings: start-up and shutdown on a loaded 2-core machine can take many seconds; waits poll for progress.
START_CEILING_S = 120.0
STOP_CEILING_S = 60.0


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<version>/bin), or None."""
    override = os.environ.get("SCB_TEST_PG_BIN")
    if override:
        path = Path(override)
        return path if (path / "postgres").is_file() else None
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            version = candidate.parent.name
            found.append((int(version) if version.isdigit() else 0, candidate))
    if found:
        return max(found)[1]
    on_path = shutil.which("postgres") or shutil.which("initdb")
    if on_path and (Path(on_path).parent / "initdb").is_file() and (Path(on_path).parent / "postgres").is_file():
        return Path(on_path).parent
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root (None: we are not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("SCB_TEST_PG_USER"), "postgres", "scb-pgtest"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "scb-pgtest"],
            capture_output=True,
            check=False,
        )
        try:
            return pwd.getpwnam("scb-pgtest")
        except KeyError:
            pass
    return pwd.getpwnam("nobody")


def _temp_base(user: pwd.struct_passwd | None) -> str | None:
    """Where the temporary directory goes: $TMPDIR as usual, unless the server's user could not reach it (a TMPDIR
    under /root, mode 0700), then /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    if user is None:
        return None
    for directory in (base, *base.parents):
        if not directory.stat().st_mode & 0o001:  # others may not traverse it
            return "/tmp"
    return str(base)


_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    """A database or role name the tests chose; checked rather than quoted, so a typo fails loudly."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
    return name


class PostgresServer:
    """One PostgreSQL server in a temporary directory, run as an unprivileged user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.host = "127.0.0.1"
        self.port = 0
        self.superuser = SUPERUSER
        self._user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="scb-pg-", dir=_temp_base(self._user)))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._version_num = 0
        self.socket_dir.mkdir()
        if self._user is not None:
            # mkdtemp is 0700 root: the server's user must own its directory (initdb also insists on that).
            for path in (self.root, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    # -- running things as the server's user --------------------------------------------------------------------
    def _popen_kwargs(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.root)}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": [], "env": env,
                "cwd": str(self.root)}

    def _initdb(self) -> None:
        proc = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            capture_output=True,
            timeout=START_CEILING_S,
            **self._popen_kwargs(),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        # trust only for the superuser over loopback; every other role proves its password
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all {self.superuser} trust\n"
            f"host all {self.superuser} 127.0.0.1/32 trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def start(self) -> None:
        """initdb on first start, then start on a free port (a new one if the first was taken meanwhile)."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        last_error = ""
        for _ in range(5):
            if not self.port:
                self.port = free_port()
            if self._launch():
                return
            last_error = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            if "could not bind" not in last_error and "Address already in use" not in last_error:
                break
            self.port = 0
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _launch(self) -> bool:
        log = open(self.log_path, "ab")
        if self._user is not None:
            os.chown(self.log_path, self._user.pw_uid, self._user.pw_gid)
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.socket_dir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning",
             "-c", "password_encryption=scram-sha-256"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest does not reach the server before our own stop
            **self._popen_kwargs(),
        )
        log.close()
        deadline = time.monotonic() + START_CEILING_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self._ready():
                return True
            time.sleep(0.1)
        self.stop()
        return False

    @property
    def version_num(self) -> int:
        """The server's `server_version_num` (e.g. 150008), asked once."""
        if not self._version_num:
            self._version_num = int(self.psql("SHOW server_version_num")[0][0])
        return self._version_num

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host=self.host, port=self.port, user=self.superuser, dbname="postgres",
                                 connect_timeout=5):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back sessions, stop); SIGKILL only if it does not end within the ceiling."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_CEILING_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_CEILING_S)

    def restart(self) -> None:
        """Stop and start on the same port and data (a test of clients surviving a server restart)."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- databases and roles ------------------------------------------------------------------------------------
    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        who = user or self.superuser
        if password is not None:
            from urllib.parse import quote

            who = f"{who}:{quote(password, safe='')}"
        return f"postgresql+psycopg://{who}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit: CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.superuser, dbname=database,
                             autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]  (the tests' own SQL)
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None, template: str | None = None, owner: str | None = None) -> str:
        """A fresh database (template1's copy, or `template`'s) and its superuser URL."""
        name = _ident(name or f"t_{secrets.token_hex(6)}")
        sql = f"CREATE DATABASE {name}"
        if template:
            sql += f" TEMPLATE {_ident(template)}"
        if owner:
            sql += f" OWNER {_ident(owner)}"
        self.psql(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop even while a forgotten connection is open (WITH FORCE), so one test's leak does not fail the next."""
        self.psql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    def create_role(self, name: str, password: str, superuser: bool = False) -> None:
        quoted = password.replace("'", "''")
        self.psql(f"CREATE ROLE {_ident(name)} LOGIN {'SUPERUSER' if superuser else ''} PASSWORD '{quoted}'")


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """The session's one server, started on first use (skip or CI failure when PostgreSQL is not installed)."""
    global _shared
    bin_dir = find_bin_dir()
    require_service(bin_dir is not None, "PostgreSQL is not installed (Debian package postgresql)")
    assert bin_dir is not None
    if _shared is None or not _shared.running:
        if _shared is None:
            _shared = PostgresServer(bin_dir)
            atexit.register(_shared.destroy)
        _shared.start()
    return _shared


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = shared_server()
    yield server
    # stopped at interpreter exit (atexit), not here: this fixture is registered once per importing module,
    # and an early finalizer would stop the server under another module's tests.


def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new database's URL, dropped when the generator is resumed (a fixture's teardown)."""
    url = server.create_database()
    yield url
    if server.running:
        server.drop_database(database_name(url))


@pytest.fixture
def postgresql_url(postgres_server: PostgresServer) -> Iterator[str]:
    yield from fresh_database(postgres_server)


#: The backends a database-facing test runs on (`database_url`'s params): the embedded default and PostgreSQL.
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty hub database, once on SQLite (a file in tmp_path) and once on PostgreSQL (a fresh database).

    The PostgreSQL server is started only when a postgresql case runs (`-k sqlite` never needs one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scb.sqlite3'}"
        return
    # postgres_server, not postgresql_url: a module may import database_url without the other fixtures
    yield from fresh_database(request.getfixturevalue("postgres_server"))


def backend(url: str) -> str:
    """"sqlite" or "postgresql": which backend a `database_url` is on (for the few assertions that differ)."""
    return url.split(":", 1)[0].split("+", 1)[0]
