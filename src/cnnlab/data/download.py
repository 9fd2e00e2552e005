"""Fetching dataset files from their mirrors, verified before they are kept."""

from __future__ import annotations

import errno
import http.client
import importlib.util
import logging
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.std import tqdm

from cnnlab.data.datasets import (
    Dataset,
    Resource,
    cache_dir,
    checksum_problem,
    find_file,
    get_dataset,
    mirrors_of,
)
from cnnlab.data.idx import parse_idx, read_bytes
from cnnlab.errors import DataError
from cnnlab.fsutil import atomic_writer, exclusive
from cnnlab.logs import in_notebook

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # bytes per read
TIMEOUT = 30.0  # seconds without data before a mirror is given up
MIN_RATE = 20 << 10  # bytes/s: a file takes at most 30 s plus its size at this rate
NO_SIZE = 1 << 30  # bytes: the cap of a file whose size is not known (IDX's own cap)


def progress_bar() -> Any:
    """tqdm's widget in a notebook that can show one (ipywidgets installed), else its
    text bar, which terminals and notebooks both redraw in place."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget

        return widget
    return tqdm


class MirrorFailed(OSError):
    """One mirror did not serve a good copy: the next one is tried."""


def download_limits(resource: Resource) -> tuple[int, float]:
    """(the most bytes a mirror may send for ``resource``'s .gz, seconds it may take):
    gzip makes no file meaningfully larger than its payload, and a mirror slower than
    :data:`MIN_RATE` is given up for the next one."""
    size = resource.size or NO_SIZE
    most = size + size // 100 + 4096
    return most, TIMEOUT + most / MIN_RATE


def checked_url(url: str) -> str:
    """``url``, if it is an http(s) address; else the mirror's failure, said."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is no number)
    except ValueError as e:
        raise MirrorFailed(f"not a URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MirrorFailed("not an http:// or https:// URL")
    return url


def fetch(url: str, dest: Path, progress: bool, most: int, seconds: float) -> None:
    """Download ``url`` into ``dest`` atomically: at most ``most`` bytes within
    ``seconds``; raise OSError (:class:`MirrorFailed`) on any failure, leaving no file."""
    deadline = time.monotonic() + seconds
    try:
        response = urllib.request.urlopen(checked_url(url), timeout=min(TIMEOUT, seconds))
    except (ValueError, http.client.HTTPException) as e:  # what urllib lets through
        raise MirrorFailed(f"{type(e).__name__}: {e}") from None
    with response:
        length = response.headers.get("Content-Length")
        if length is not None and not length.strip().isdigit():
            raise MirrorFailed(f"its Content-Length {length[:40]!r} is not a number")
        total = int(length) if length is not None else None
        if total is not None and total > most:
            raise MirrorFailed(f"it announces {total:,} bytes; the file has at most {most:,}")
        with (
            atomic_writer(dest) as out,
            progress_bar()(
                total=total,
                unit="B",
                unit_scale=True,
                desc=dest.name.removeprefix(".unverified-"),
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            received = 0
            while True:
                left = deadline - time.monotonic()
                slow = MirrorFailed(
                    f"too slow: {received:,} bytes by the deadline of {seconds:.0f} s for "
                    "this file, or none for 30 s"
                )
                if left <= 0:
                    raise slow
                _read_timeout(response, min(TIMEOUT, left))
                try:
                    chunk = response.read1(CHUNK)
                except TimeoutError:
                    raise slow from None
                except http.client.HTTPException as e:
                    raise MirrorFailed(f"{type(e).__name__}: {e}") from None
                if not chunk:
                    break
                received += len(chunk)
                if received > most:
                    raise MirrorFailed(f"it sent more than the file's {most:,} bytes")
                out.write(chunk)
                bar.update(len(chunk))
            if total is not None and received != total:
                raise MirrorFailed(f"connection closed after {received} of {total} bytes")


def _read_timeout(response: Any, seconds: float) -> None:
    """Wait at most ``seconds`` for the next bytes of ``response`` (its socket's timeout),
    so that the deadline holds however slowly a mirror sends."""
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.01))


def check_file(path: Path, resource: Resource) -> None:
    """Verify a downloaded file; delete it and raise DataError if it is wrong."""
    try:
        payload = read_bytes(path)
        problem = checksum_problem(path, payload, resource)
        if problem is not None:
            raise DataError(problem)
        parse_idx(payload, resource.filename)
    except DataError:
        path.unlink(missing_ok=True)
        raise


def download(
    dataset: Dataset | str,
    dest: Path | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Download every missing file of ``dataset`` into ``dest`` (default: the cache dir)
    from ``mirrors`` (default: ``CNNLAB_MIRRORS``, else the dataset's own); return the
    directory.

    Each file goes to a temporary name and is renamed only once its checksum matches;
    on failure the next mirror is tried. Processes downloading into one directory at
    once take turns, so they end with one verified copy. ``progress``: a progress bar
    (default: on a terminal or in a notebook).
    """
    if isinstance(dataset, str):
        dataset = get_dataset(dataset)
    dest = dest or cache_dir(dataset)
    mirrors = tuple(mirrors or mirrors_of(dataset))
    if not mirrors:
        raise DataError(
            f"{dataset.name} has no download mirrors: put its four IDX files in a directory "
            "and pass --data-dir DIR"
        )
    if progress is None:
        progress = sys.stderr.isatty() or in_notebook()
    waiting = f"waiting for another process that is downloading {dataset.name} into {dest}"
    with exclusive(dest / ".download.lock", waiting):
        for leftover in dest.glob(".*unverified-*"):  # a killed download's: no one's now
            leftover.unlink(missing_ok=True)
        for resource in dataset.resources:
            if find_file(dest, resource) is None:
                fetch_verified(dataset, resource, dest, mirrors, progress)
    return dest


def fetch_verified(
    dataset: Dataset, resource: Resource, dest: Path, mirrors: Sequence[str], progress: bool
) -> None:
    """Download ``resource`` into ``dest`` from the first mirror that serves a good copy."""
    filename = resource.filename + ".gz"
    most, seconds = download_limits(resource)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        # Verify under a staging name: the real name appears only for a good file.
        staging = dest / (".unverified-" + filename)
        try:
            fetch(url, staging, progress, most, seconds)
            check_file(staging, resource)
        except OSError as e:
            staging.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DataError(
                    f"no space left on the disk holding {dest} for {filename} (up to "
                    f"{most / 1e6:.0f} MB): free some space there, or download into another "
                    "directory with `cnnlab data download --data-dir DIR`"
                ) from None
            failures.append(f"{url}: {e}")
        except DataError as e:
            failures.append(f"{url}: {e}")
        else:
            staging.replace(dest / filename)
            log.info("%s: verified", dest / filename)
            return
        log.info("%s failed (%s); trying the next mirror", url, failures[-1])
    package = (
        ", install Debian's package (apt-get install dataset-fashion-mnist)"
        if dataset.system_dirs
        else ""
    )
    raise DataError(
        f"could not download {filename}: " + "; ".join(failures) + ". Set "
        "CNNLAB_MIRRORS=URL[,URL...] to download from another mirror" + package + ", or copy "
        "the four IDX files (raw or .gz) into a directory and pass --data-dir DIR (or set "
        "CNNLAB_DATA=DIR)"
    )
