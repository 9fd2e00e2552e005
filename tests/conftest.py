"""Tiny synthetic IDX datasets, written by fixtures, for fast unit tests."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import datasets as ds

REAL_DATA = Path("/usr/share/datasets/fashion-mnist")


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


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's cache, settings (the trusted model files) and
    CNNLAB_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


needs_real_data = pytest.mark.skipif(
    not (REAL_DATA / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
