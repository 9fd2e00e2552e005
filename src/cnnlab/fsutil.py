"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

from cnnlab import environ
from cnnlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as f:
        f.write(data)


def user_cache() -> Path:
    """cnnlab's per-user cache: ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``."""
    return Path(environ.cache_home() or Path.home() / ".cache") / "cnnlab"


@contextmanager
def exclusive(path: Path, waiting: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if need be) while the block
    runs; another process (or notebook) asking for it waits, after printing ``waiting``
    once on stderr. The lock goes with the process, so a killed holder never leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if not _try_lock(f.fileno()):
            print(waiting, file=sys.stderr)
            while not _try_lock(f.fileno()):
                time.sleep(0.2)
        try:
            yield
        finally:
            _unlock(f.fileno())


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":
            os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the file position
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another process
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def quote(path: str | Path) -> str:
    """``path`` as one word of a shell command that a message prints.

    >>> quote("runs/my run")
    "'runs/my run'"
    """
    return shlex.quote(str(path))


def load_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file ``path`` (a ``what``, for messages) as a dict."""
    try:
        values: dict[str, Any] = tomllib.loads(path.read_text())
        return values
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML file ({e})") from None
    except RecursionError:  # tomllib parses nested tables and arrays recursively
        raise ConfigError(f"{path}: its tables or arrays are nested too deeply to read") from None
