"""Durable file writes and secret files.

Secrets (channel seeds, side keys, keystores, password files) live in files with mode 0600 and are never
passed on a command line or logged. A file that others can read is refused rather than silently used:
a seed that leaked is a channel anyone can forge.
"""
from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scb.errors import ConfigError, SecretFileError


class AlreadyRunning(ConfigError):
    """Another process of the same kind holds this data directory."""


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write `data` so that `path` holds either the old or the new content after a crash or power cut.

    temp file in the same directory -> fsync -> rename over the target -> fsync the directory.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_secret_file(path: str | os.PathLike[str], what: str = "secret") -> str:
    """Return the stripped text of a secret file, refusing one that group or others may read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{what} file {p} does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"{what} file {p} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} file {p} is not a regular file")
    if st.st_mode & 0o077:
        raise SecretFileError(
            f"{what} file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}"
        )
    try:
        return p.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what} file {p} cannot be read as ASCII text: {exc}") from None


def write_secret_file(path: str | os.PathLike[str], text: str) -> None:
    """Create a secret file with mode 0600 (atomically, durably)."""
    atomic_write(path, (text.strip() + "\n").encode("ascii"), mode=0o600)


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """One `what` per data directory: an advisory lock that dies with the process (kill -9 included), so a
    restart never finds it stale. Why: two publishers could attach the same prepared message twice, two
    samplers would interleave sequence numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another {what} is running on {path.parent} (lock {path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
