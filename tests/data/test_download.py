"""The download path against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from cnnlab.data import datasets as ds
from cnnlab.data import download, load_dataset
from cnnlab.errors import DataError
from tests.conftest import write_dataset


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good/<file> from the fixture files, /corrupt/<file> with a changed byte,
    and /drop/<file> announcing the full length but closing half way."""

    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        if mode == "corrupt":  # a valid gzip whose payload has one byte changed
            payload = gzip.decompress(body)
            body = gzip.compress(payload[:-1] + bytes([payload[-1] ^ 0xFF]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "drop" else body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ds.Dataset]]:
    source = tmp_path / "served"
    dataset = write_dataset(source, gz=True)
    Handler.files = {p.name: p.read_bytes() for p in source.iterdir()}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", dataset
    httpd.shutdown()


def test_good_mirror(server: tuple[str, ds.Dataset], tmp_path: Path) -> None:
    url, dataset = server
    dest = download(dataset, tmp_path / "dest", [url + "/good/"], progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        r.filename + ".gz" for r in dataset.resources
    )
    train, _ = load_dataset(dataset, dest)
    assert len(train.labels) == 96


def test_default_destination_is_the_cache(server: tuple[str, ds.Dataset], tmp_path: Path) -> None:
    url, dataset = server
    dest = download(dataset, mirrors=[url + "/good/"], progress=False)
    assert dest == tmp_path / "cache" / "cnnlab" / "tiny"


@pytest.mark.parametrize("bad", ["corrupt", "drop", "missing"])
def test_bad_mirror_falls_back_to_the_next(
    server: tuple[str, ds.Dataset], tmp_path: Path, bad: str
) -> None:
    url, dataset = server
    mirrors = [f"{url}/{bad}/" if bad != "missing" else f"{url}/nothing-here/", url + "/good/"]
    dest = download(dataset, tmp_path / "dest", mirrors, progress=False)
    load_dataset(dataset, dest)  # verifies every file


def test_all_mirrors_bad_keeps_nothing_and_lists_alternatives(
    server: tuple[str, ds.Dataset], tmp_path: Path
) -> None:
    url, dataset = server
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download(dataset, dest, [url + "/corrupt/", url + "/drop/"], progress=False)
    message = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz from any mirror" in message
    assert "checksum mismatch" in message and "--data-dir DIR" in message
    assert list(dest.iterdir()) == []


def test_offline(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        download(ds.FASHION_MNIST, tmp_path, ["http://127.0.0.1:9/"], progress=False)
