"""Downloads from hostile or broken mirrors, against a real HTTP server on 127.0.0.1: an
endless body stops at the file's size, a mirror that sends a byte now and then is given up
at the file's deadline, malformed headers and mirror entries move on to the next mirror, a
full disk is said as such, and no temporary file outlives any of them (nor a SIGKILL)."""

from __future__ import annotations

import errno
import http.server
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from cnnlab.data import datasets as ds
from cnnlab.data import download, load_dataset
from cnnlab.errors import DataError
from tests.conftest import write_dataset

download_module = importlib.import_module("cnnlab.data.download")  # the function hides it


class Hostile(http.server.BaseHTTPRequestHandler):
    """/good/F serves F; /endless/F sends bytes until the client hangs up (at most 64 MB);
    /dribble/F announces F's length, then sends a byte every 0.3 s; /length/F has a
    Content-Length that is no number; /huge/F announces a terabyte."""

    files: ClassVar[dict[str, bytes]] = {}
    sent: ClassVar[dict[str, int]] = {}
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        length = {"length": "12abc", "huge": str(10**12), "endless": None}.get(mode, str(len(body)))
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        try:
            if mode == "endless":
                for _ in range(1024):
                    self.wfile.write(b"\0" * 65536)
                    self.sent[name] = self.sent.get(name, 0) + 65536
            elif mode == "dribble":
                for byte in body[:100]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.3)
            else:
                self.wfile.write(body)
        except OSError:  # the client gave up: as it should
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ds.Dataset]]:
    """The tiny dataset behind the hostile server, registered as "tiny"; each file's
    deadline is 1.5 s (a timeout of 1 s plus its size at a high rate)."""
    source = tmp_path / "served"
    dataset = write_dataset(source, gz=True)
    Hostile.files, Hostile.sent = {p.name: p.read_bytes() for p in source.iterdir()}, {}
    monkeypatch.setitem(ds.DATASETS, "tiny", dataset)
    monkeypatch.setattr(download_module, "TIMEOUT", 1.0)
    monkeypatch.setattr(download_module, "MIN_RATE", 200_000)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", dataset
    httpd.shutdown()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != ".download.lock")


def test_an_endless_body_stops_at_the_files_size(
    hostile: tuple[str, ds.Dataset], tmp_path: Path
) -> None:
    url, dataset = hostile
    dest = tmp_path / "dest"
    download(dataset, dest, [url + "/endless/", url + "/good/"], progress=False)
    most = download_module.download_limits(dataset.train_images)[0]
    # what the client read stopped at the cap; the server could write a few socket buffers more
    assert 0 < Hostile.sent["train-images-idx3-ubyte.gz"] < most + (8 << 20)
    assert leftovers(dest) == sorted(r.filename + ".gz" for r in dataset.resources)


@pytest.mark.e2e
def test_a_dribbling_mirror_is_given_up_at_the_deadline_for_the_next(
    hostile: tuple[str, ds.Dataset], tmp_path: Path
) -> None:
    url, dataset = hostile
    _, seconds = download_module.download_limits(dataset.train_labels)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="too slow") as refused:
        download(dataset, dest, [url + "/dribble/"], progress=False)
    assert "\n" not in str(refused.value)
    started = time.monotonic()
    download(dataset, dest, [url + "/dribble/", url + "/good/"], progress=False)
    assert time.monotonic() - started < 4 * (seconds + 0.5)  # four files, each given up once
    assert leftovers(dest) == sorted(r.filename + ".gz" for r in dataset.resources)


@pytest.mark.parametrize(
    ("mirror", "said"),
    [
        ("/length/", "its Content-Length '12abc' is not a number"),
        ("/huge/", "it announces 1,000,000,000,000 bytes"),
        ("not a url", "not an http:// or https:// URL"),
        ("http://[::1", "not a URL"),
        ("file:///etc/", "not an http:// or https:// URL"),
        ("http://127.0.0.1:notaport/", "not a URL"),
    ],
)
def test_a_malformed_header_or_mirror_entry_moves_on_to_the_next_mirror(
    mirror: str,
    said: str,
    hostile: tuple[str, ds.Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, dataset = hostile
    bad = url + mirror if mirror.startswith("/") else mirror
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=said):
        download(dataset, dest, [bad], progress=False)
    assert leftovers(dest) == []
    monkeypatch.setenv("CNNLAB_MIRRORS", f"{bad},{url}/good/")  # as a user would give them
    train, _ = load_dataset("tiny")
    assert len(train.labels) == 96


def test_a_full_disk_is_said_as_such_and_no_other_mirror_is_tried(
    hostile: tuple[str, ds.Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, dataset = hostile
    real_writer = download_module.atomic_writer

    class Full:
        def __init__(self, f: object) -> None:
            self.f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    from contextlib import contextmanager

    @contextmanager
    def full_disk(path: Path) -> Iterator[Full]:
        with real_writer(path) as f:
            yield Full(f)

    monkeypatch.setattr(download_module, "atomic_writer", full_disk)
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as refused:
        download(dataset, dest, [url + "/good/", url + "/good/"], progress=False)
    message = str(refused.value)
    assert message.startswith(f"no space left on the disk holding {dest}")
    assert "free some space" in message and "mirror" not in message
    assert leftovers(dest) == []


@pytest.mark.e2e
def test_a_killed_download_leaves_nothing_once_the_next_one_ran(
    hostile: tuple[str, ds.Dataset], tmp_path: Path
) -> None:
    url, dataset = hostile
    dest = tmp_path / "dest"
    script = (
        "import sys; from cnnlab.data import download, datasets as ds; "
        "import importlib; importlib.import_module('cnnlab.data.download').TIMEOUT = 60.0; "
        "res = [ds.Resource(n, None) for n in sys.argv[3:]]; "
        "from pathlib import Path; "
        "download(ds.Dataset('tiny', ('a',), *res, mirrors=()), Path(sys.argv[1]), [sys.argv[2]], "
        "progress=False)"
    )
    names = [r.filename for r in dataset.resources]
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(dest), url + "/dribble/", *names], env={**os.environ}
    )
    try:
        for _ in range(200):  # the first file's temporary appears, then the kill
            if dest.exists() and any("unverified" in p.name for p in dest.iterdir()):
                break
            time.sleep(0.05)
        assert any("unverified" in p.name for p in dest.iterdir())
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    download(dataset, dest, [url + "/good/"], progress=False)
    assert leftovers(dest) == sorted(r.filename + ".gz" for r in dataset.resources)


def test_the_built_in_mirrors_are_tried_https_first() -> None:
    for dataset in ds.DATASETS.values():
        schemes = [m.split(":")[0] for m in dataset.mirrors]
        assert schemes == sorted(schemes, key=lambda s: s != "https"), dataset.name


def test_a_raw_idx_file_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from cnnlab.data.idx import read_bytes

    huge = tmp_path / "train-images-idx3-ubyte"
    with open(huge, "wb") as f:  # sparse: 1.1 GB on paper, nothing on disk
        f.truncate(1_100_000_000)
    with pytest.raises(DataError, match="more than any IDX data set has"):
        read_bytes(huge)
