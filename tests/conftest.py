"""Tiny synthetic IDX datasets, written by fixtures, for fast unit tests."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnlab.data import datasets as ds

REAL_DATA = Path("/usr/share/datasets/fashion-mnist")

if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each (and
    os.environ["OMP_NUM_THREADS"] = "1"  # the commands they start), none waiting on another


OUTSIDE_FAST = ("slow", "gpu", "distributed", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier (``-m fast``) is every test marked none of :data:`OUTSIDE_FAST`. The
    modules with slow tests run first (each kept whole, for its module fixtures): under
    ``-n 2`` the minute-long tests start early and the short ones fill the end."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in OUTSIDE_FAST):
            item.add_marker(pytest.mark.fast)
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: file order kept


@pytest.fixture(autouse=True)
def fast_means_unit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast test starts no process (no compiler, browser or command) and trains no run
    to its end: one that does fails here, saying to mark it ``e2e``."""
    if request.node.get_closest_marker("fast") is None:
        return

    def refused(what: str) -> Any:
        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"a fast test {what}: mark it @pytest.mark.e2e")

        return refuse

    from cnnlab.training import trainer

    monkeypatch.setattr(subprocess.Popen, "__init__", refused("starts a process"))
    monkeypatch.setattr(trainer, "fit", refused("trains a run to its end"))


ROOT = Path(__file__).resolve().parents[1]
TOOL_CACHES = ("__pycache__", ".pytest_cache")  # Python's and pytest's own, ignored by git


def outside_git(config: pytest.Config) -> set[str] | None:
    """What ``git status`` lists in the checkout beyond its tracked files (untracked and
    ignored paths, the tools' caches left out); None outside a git checkout, and in an
    xdist worker (the controller checks)."""
    if hasattr(config, "workerinput") or not (ROOT / ".git").exists():
        return None
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    )
    if listed.returncode != 0:
        return None
    paths = {line[3:] for line in listed.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(part in TOOL_CACHES for part in Path(p).parts)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[CHECKOUT] = outside_git(session.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test writes into the checkout: a path that appeared during the session fails it."""
    before, after = session.config.stash.get(CHECKOUT, None), outside_git(session.config)
    if before is None or after is None or not (after - before):
        return
    print(f"\nthe tests wrote into the checkout: {', '.join(sorted(after - before))}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


CHECKOUT = pytest.StashKey[set[str] | None]()


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis's example database and caches go to the temporary directory, not into
    the checkout; under pytest-xdist, torch in each worker takes one thread."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "cnnlab-hypothesis")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def run_cnnlab(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``cnnlab ARGS`` in a new process of this interpreter, waited for, its output as text
    (``env`` adds to this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_cnnlab(*args: str) -> subprocess.Popen[str]:
    """``cnnlab ARGS`` started in a new process and not waited for (to signal or kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """Encode ``array`` (uint8) as IDX."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> bytes:
    """Write ``array`` as an IDX file (gzipped if ``gz``); return the uncompressed payload."""
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return payload


def make_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images whose brightness depends on the label, so a model can learn something."""
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    noise = rng.integers(0, 40, size=(n, 28, 28))
    images = np.clip(noise + labels[:, None, None] * 20, 0, 255).astype(np.uint8)
    return images, labels


def write_dataset(
    directory: Path, n_train: int = 96, n_test: int = 40, gz: bool = True
) -> ds.Dataset:
    """Write a tiny four-file dataset into ``directory``; return its Dataset with real checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    resources = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = make_split(n, rng)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            payload = write_idx(directory / (name + (".gz" if gz else "")), array, gz)
            resources.append(
                ds.Resource(name, hashlib.sha256(payload).hexdigest(), size=len(payload))
            )
    return ds.Dataset(
        "tiny", tuple(f"class{i}" for i in range(10)), *resources, mirrors=("http://127.0.0.1:9/",)
    )


@pytest.fixture
def tiny_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ds.Dataset, Path]:
    """A registered dataset called "tiny" and the directory holding its files."""
    directory = tmp_path / "tiny-data"
    dataset = write_dataset(directory)
    monkeypatch.setitem(ds.DATASETS, "tiny", dataset)
    return dataset, directory


@pytest.fixture
def tiny_run(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A finished 2-epoch run on the tiny dataset: (its run directory, the data directory)."""
    from cnnlab.training import TrainConfig, train

    _, directory = tiny_dataset
    config = TrainConfig(
        dataset="tiny",
        data_dir=str(directory),
        epochs=2,
        batch_size=32,
        device="cpu",
        out_dir=str(tmp_path / "run"),
        quiet=True,
    )
    return train(config).run_dir, directory


@pytest.fixture
def displayed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The PNGs sent to IPython's display, as a notebook would show them: each new one,
    then each update of it in place (the display must ask for a display_id to update)."""
    IPython = pytest.importorskip("IPython")
    pngs: list[bytes] = []

    class Handle:
        def update(self, image: object) -> None:
            pngs.append(image.data)  # type: ignore[attr-defined]

    def display(image: object, display_id: bool = False) -> Handle:
        assert display_id  # an output that later updates replace
        pngs.append(image.data)  # type: ignore[attr-defined]
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    return pngs


@pytest.fixture(scope="session")
def built_kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU kernels for this machine, built once (a build takes seconds), and those the
    tests' commands built since, linked into each test's empty cache (the measured choices
    are not kept)."""
    from cnnlab.accel import cpu

    kept, build = tmp_path_factory.mktemp("kernels"), tmp_path_factory.mktemp("kernel-build")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(build))
        if cpu.library("native") is not None:
            for made in (build / "cnnlab" / "kernels").glob("cpu_block-*"):
                shutil.copyfile(made, kept / made.name)
    return kept


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built_kernels: Path
) -> Iterator[None]:
    """Keep tests away from the user's cache, settings (the trusted model files),
    CNNLAB_DATA and the checkout: each runs in its own working directory, with its own
    cache (holding the kernels built so far)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    kernels = tmp_path / "cache" / "cnnlab" / "kernels"
    kernels.mkdir(parents=True)
    for built in built_kernels.glob("cpu_block-*"):
        os.link(built, kernels / built.name)
    yield
    from cnnlab.accel.cpu import digest_file

    for made in kernels.glob("cpu_block-*.so") if kernels.is_dir() else ():
        digest = digest_file(made)
        whole = digest.is_file() and digest.read_text() == sha256_of(made)
        if whole and not (built_kernels / made.name).exists():
            for source in (digest, made):  # the library last: linked only with its digest
                partial = built_kernels / f".{source.name}.{os.getpid()}"
                shutil.copyfile(source, partial)
                os.replace(partial, built_kernels / source.name)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


needs_real_data = pytest.mark.skipif(
    not (REAL_DATA / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
