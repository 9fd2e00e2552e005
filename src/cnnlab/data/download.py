"""Fetching dataset files from their mirrors, verified before they are kept."""

from __future__ import annotations

import importlib.util
import logging
import sys
import urllib.error
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


def progress_bar() -> Any:
    """tqdm's widget in a notebook that can show one (ipywidgets installed), else its
    text bar, which terminals and notebooks both redraw in place."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget

        return widget
    return tqdm


def fetch(url: str, dest: Path, progress: bool) -> None:
    """Download ``url`` into ``dest`` atomically; raise OSError on any network failure."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
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
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            if total is not None and received != total:
                raise OSError(f"connection closed after {received} of {total} bytes")


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
        for resource in dataset.resources:
            if find_file(dest, resource) is None:
                fetch_verified(dataset, resource, dest, mirrors, progress)
    return dest


def fetch_verified(
    dataset: Dataset, resource: Resource, dest: Path, mirrors: Sequence[str], progress: bool
) -> None:
    """Download ``resource`` into ``dest`` from the first mirror that serves a good copy."""
    filename = resource.filename + ".gz"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        # Verify under a staging name: the real name appears only for a good file.
        staging = dest / (".unverified-" + filename)
        try:
            fetch(url, staging, progress)
            check_file(staging, resource)
        except (OSError, urllib.error.URLError, DataError) as e:
            log.info("%s failed (%s); trying the next mirror", url, e)
            failures.append(f"{url}: {e}")
            continue
        staging.replace(dest / filename)
        log.info("%s: verified", dest / filename)
        return
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
