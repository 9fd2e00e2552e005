"""The download path against a real HTTP server on 127.0.0.1: on request, and on first
use (the data a command or a notebook needs and does not find)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import os
import shutil
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
from tests.conftest import REAL_DATA, needs_real_data, write_dataset


@functools.cache
def corrupted(body: bytes) -> bytes:
    """``body`` (a gzip file) with the last byte of its payload changed, compressed again
    (once per file: Fashion-MNIST's 47 MB of training images take seconds)."""
    payload = gzip.decompress(body)
    return gzip.compress(payload[:-1] + bytes([payload[-1] ^ 0xFF]), compresslevel=1)


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good/<file> from the fixture files, /corrupt/<file> with a changed byte,
    /drop/<file> announcing the full length but closing half way, and /slow/<file> after a
    second's wait; records every request's path."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        if mode == "corrupt":  # a valid gzip whose payload has one byte changed
            body = corrupted(body)
        if mode == "slow":  # long enough for a second downloader to arrive meanwhile
            time.sleep(1.0)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "drop" else body)

    def log_message(self, *args: object) -> None:
        pass


def serve(files: dict[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (name: bytes) on 127.0.0.1 while the generator is open; yield the URL."""
    Handler.files, Handler.requests = files, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ds.Dataset]]:
    """The tiny dataset served over HTTP: (the server's URL, the dataset)."""
    source = tmp_path / "served"
    dataset = write_dataset(source, gz=True)
    for url in serve({p.name: p.read_bytes() for p in source.iterdir()}):
        yield url, dataset


@pytest.fixture
def tiny_served(
    server: tuple[str, ds.Dataset], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, ds.Dataset]:
    """The served tiny dataset registered as "tiny", with an empty cache."""
    monkeypatch.setitem(ds.DATASETS, "tiny", server[1])
    return server


def test_good_mirror(server: tuple[str, ds.Dataset], tmp_path: Path) -> None:
    url, dataset = server
    dest = download(dataset, tmp_path / "dest", [url + "/good/"], progress=False)
    assert sorted(p.name for p in dest.glob("*ubyte*")) == sorted(
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
    assert message.startswith("could not download train-images-idx3-ubyte.gz: ")
    assert "checksum mismatch" in message and "--data-dir DIR" in message
    assert "\n" not in message
    assert [p.name for p in dest.iterdir()] == [".download.lock"]


def test_offline(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        download(ds.FASHION_MNIST, tmp_path, ["http://127.0.0.1:9/"], progress=False)


def test_first_use_downloads_from_cnnlab_mirrors(
    tiny_served: tuple[str, ds.Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, dataset = tiny_served
    monkeypatch.setenv("CNNLAB_MIRRORS", f"{url}/good/not-here/, {url}/good/")
    train, test = load_dataset("tiny")
    assert (len(train.labels), len(test.labels)) == (96, 40)
    cache = tmp_path / "cache" / "cnnlab" / "tiny"
    assert "downloading it into " + str(cache) in capsys.readouterr().err
    assert sorted(p.name for p in cache.glob("*.gz")) == sorted(
        r.filename + ".gz" for r in dataset.resources
    )
    served = len(Handler.requests)
    load_dataset("tiny")  # found in the cache: nothing fetched again
    assert len(Handler.requests) == served == 8  # each file: the empty mirror, then the good one


def test_first_use_refuses_a_tampered_file_in_one_line(
    tiny_served: tuple[str, ds.Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = tiny_served
    monkeypatch.setenv("CNNLAB_MIRRORS", f"{url}/corrupt/")
    with pytest.raises(DataError) as info:
        load_dataset("tiny")
    message = str(info.value)
    assert message.startswith("could not download train-images-idx3-ubyte.gz: ")
    assert "checksum mismatch" in message and "SHA-256" in message and "\n" not in message
    assert list((tmp_path / "cache" / "cnnlab" / "tiny").glob("*ubyte*")) == []


def test_offline_fetches_nothing_and_names_both_ways_to_download(
    tiny_served: tuple[str, ds.Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = tiny_served
    monkeypatch.setenv("CNNLAB_MIRRORS", f"{url}/good/")
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_dataset("tiny")
    message = str(info.value)
    assert "offline (--offline or CNNLAB_OFFLINE=1), so nothing was downloaded" in message
    assert 'cnnlab.data.download("tiny")' in message
    assert "`cnnlab data download --dataset tiny`" in message
    assert Handler.requests == []


def hidden_system_copy(*command: str) -> list[str]:
    """``command`` run where the OS package's Fashion-MNIST directory looks empty (a
    private mount namespace), as on a machine that never installed it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to hide the installed dataset")
    script = 'mount --bind "$1" /usr/share/datasets/fashion-mnist && shift && exec "$@"'
    empty = Path(os.environ["XDG_CACHE_HOME"]).parent / "empty"
    empty.mkdir(exist_ok=True)
    return ["unshare", "-m", "sh", "-c", script, "sh", str(empty), *command]


@pytest.fixture
def fashion_server() -> Iterator[str]:
    """The four official Fashion-MNIST .gz files on 127.0.0.1: /good/ whole, /corrupt/
    with one byte of each payload changed."""
    yield from serve({p.name: p.read_bytes() for p in REAL_DATA.glob("*.gz")})


LOAD = "from cnnlab.compat import d2l; d2l.load_data_fashion_mnist(256); print('loaded')"


@pytest.mark.slow
@needs_real_data
def test_fresh_machine_downloads_on_first_use(fashion_server: str, tmp_path: Path) -> None:
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    env = {**os.environ, "CNNLAB_MIRRORS": fashion_server + "/good/"}
    done = subprocess.run(
        hidden_system_copy(sys.executable, "-c", LOAD),
        cwd=notebook_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "loaded\n" and "downloading it into" in done.stderr
    cache = tmp_path / "cache" / "cnnlab" / "fashion-mnist"
    assert sorted(p.name for p in cache.glob("*.gz")) == sorted(
        p.name for p in REAL_DATA.glob("*.gz")
    )
    run = tmp_path / "run"
    train = [sys.executable, "-m", "cnnlab", "train", "--epochs", "1", "--out-dir", str(run)]
    shutil.rmtree(cache)
    done = subprocess.run(
        hidden_system_copy(*train), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "downloading it into" in done.stderr and (run / "model.safetensors").is_file()


@pytest.mark.slow
@needs_real_data
def test_fresh_machine_refuses_a_tampered_mirror_and_offline(
    fashion_server: str, tmp_path: Path
) -> None:
    train = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--epochs",
        "1",
        "--out-dir",
        str(tmp_path / "r"),
    ]
    for command in ([sys.executable, "-c", LOAD], train):
        env = {**os.environ, "CNNLAB_MIRRORS": fashion_server + "/corrupt/"}
        done = subprocess.run(
            hidden_system_copy(*command), env=env, capture_output=True, text=True, timeout=120
        )
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1, done.stderr
        assert "could not download train-images-idx3-ubyte.gz: " in last
        assert "checksum mismatch: the contents has SHA-256" in last
        asked = len(Handler.requests)
        if command is train:  # the flag
            command = [*train, "--offline"]
        else:
            env["CNNLAB_OFFLINE"] = "1"
        done = subprocess.run(
            hidden_system_copy(*command), env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1 and len(Handler.requests) == asked
        assert 'cnnlab.data.download("fashion-mnist")' in done.stderr
        assert "cnnlab data download --dataset fashion-mnist" in done.stderr


@pytest.mark.slow
@needs_real_data
def test_two_processes_at_once_download_one_verified_copy(
    fashion_server: str, tmp_path: Path
) -> None:
    env = {**os.environ, "CNNLAB_MIRRORS": fashion_server + "/slow/"}
    command = hidden_system_copy(sys.executable, "-c", LOAD)
    both = [
        subprocess.Popen(
            command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    cache = tmp_path / "cache" / "cnnlab" / "fashion-mnist"
    names = sorted(p.name for p in REAL_DATA.glob("*.gz"))
    assert sorted(p.name for p in cache.iterdir() if p.name != ".download.lock") == names
    assert sorted(Handler.requests) == ["/slow/" + n for n in names]  # each file fetched once
    assert any("waiting for another process" in err for _, err in outputs)
    load_dataset("fashion-mnist", cache)  # and verified


@pytest.mark.slow
@needs_real_data
def test_the_books_data_folder_is_found_without_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.compat import d2l

    unpackaged = dataclasses.replace(ds.FASHION_MNIST, system_dirs=())
    monkeypatch.setitem(ds.DATASETS, "fashion-mnist", unpackaged)
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")  # a download would fail the test
    raw = tmp_path / "data" / "FashionMNIST" / "raw"  # torchvision's layout, as the book left it
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((REAL_DATA / (name + ".gz")).read_bytes()))
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(REAL_DATA / name, raw / name)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    assert (len(train_iter), len(test_iter)) == (235, 40)
    data = d2l.FashionMNIST(batch_size=128)
    assert (len(data.train), len(data.val)) == (60000, 10000)
    monkeypatch.chdir(tmp_path)  # ../data is not there: the data would have to be downloaded
    with pytest.raises(DataError, match=r"offline \(--offline or CNNLAB_OFFLINE=1\)"):
        d2l.FashionMNIST(batch_size=128)
