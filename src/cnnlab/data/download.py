"""Fetching dataset files from their mirrors, verified before they are kept."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cnnlab.data.datasets import Dataset, Resource, cache_dir, find_file, verify_payload
from cnnlab.data.idx import parse_idx, read_bytes
from cnnlab.errors import DataError
from cnnlab.fsutil import atomic_writer

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # bytes per read
TIMEOUT = 30.0  # seconds without data before a mirror is given up


def fetch(url: str, dest: Path, progress: bool) -> None:
    """Download ``url`` into ``dest`` atomically; raise OSError on any network failure."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            atomic_writer(dest) as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=dest.name,
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
        verify_payload(path, payload, resource)
        parse_idx(payload, str(path))
    except DataError:
        path.unlink(missing_ok=True)
        raise


def download(
    dataset: Dataset,
    dest: Path | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Download every missing file of ``dataset`` into ``dest`` (default: the cache dir).

    Each file goes to a temporary name and is renamed only once its checksum matches;
    on failure the next mirror is tried. Returns the directory.
    """
    dest = dest or cache_dir(dataset)
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = tuple(mirrors or dataset.mirrors)
    if not mirrors:
        raise DataError(
            f"{dataset.name} has no download mirrors: put its four IDX files in a directory "
            "and pass --data-dir DIR"
        )
    for resource in dataset.resources:
        if find_file(dest, resource) is not None:
            continue
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
            break
        else:
            hint = (
                "\n  - install Debian's package: apt-get install dataset-fashion-mnist"
                if dataset.system_dirs
                else ""
            )
            raise DataError(
                f"could not download {filename} from any mirror:\n  "
                + "\n  ".join(failures)
                + f"\nAlternatives:{hint}"
                f"\n  - copy the four IDX files (raw or .gz) into a directory and pass "
                f"--data-dir DIR (or set CNNLAB_DATA=DIR)"
                f"\n  - copy them into {dest} and run `cnnlab data verify --dataset "
                f"{dataset.name}`"
                f"\n  - pass --mirror URL to download from another mirror"
            )
    return dest
