from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import datasets as ds
from cnnlab.data import load_dataset, locate
from cnnlab.errors import DataError
from tests.conftest import write_dataset


def complete_dir(path: Path) -> Path:
    write_dataset(path)
    return path


def test_locate_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = complete_dir(tmp_path / "system")
    cache = complete_dir(tmp_path / "cache" / "cnnlab" / "tiny")
    env = complete_dir(tmp_path / "env")
    explicit = complete_dir(tmp_path / "explicit")
    dataset = ds.Dataset(
        "tiny",
        ("a",),
        *(ds.Resource(r.filename, None) for r in write_dataset(tmp_path / "x").resources),
        mirrors=(),
        system_dirs=(str(system),),
    )
    assert locate(dataset) == cache
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert locate(dataset) == env
    assert locate(dataset, explicit) == explicit
    monkeypatch.delenv("CNNLAB_DATA")
    for f in cache.iterdir():
        f.unlink()
    assert locate(dataset) == system


def test_explicit_dir_without_files_is_an_error(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    dataset, _ = tiny_dataset
    with pytest.raises(
        DataError,
        match=r"not found in .*empty \(given by --data-dir\).*drop --data-dir and cnnlab will download",
    ):
        locate(dataset, tmp_path / "empty")


def test_a_dataset_without_mirrors_is_never_downloaded() -> None:
    fake = ds.Dataset("fake", ("a",), *(ds.Resource(f"f{i}", None) for i in range(4)), mirrors=())
    with pytest.raises(DataError, match=r"fake files not found .*it is never downloaded"):
        locate(fake)
    with pytest.raises(DataError, match="it is never downloaded; put its four IDX files"):
        load_dataset("idx")


def test_load_tiny(tiny_dataset: tuple[ds.Dataset, Path]) -> None:
    _, directory = tiny_dataset
    train, test = load_dataset("tiny", directory)
    assert train.images.shape == (96, 28, 28) and test.labels.shape == (40,)
    assert train.images.dtype == np.uint8


def test_checksum_mismatch(tiny_dataset: tuple[ds.Dataset, Path]) -> None:
    dataset, directory = tiny_dataset
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    (directory / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte: checksum mismatch.*download it again"
    ):
        load_dataset(dataset, directory)


def test_fashion_mnist_checksums_reject_other_data(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(
        DataError, match="unknown dataset 'cifar'; choose one of: fashion-mnist, mnist"
    ):
        ds.get_dataset("cifar")


def test_empty_split_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = write_dataset(tmp_path, n_test=0)
    monkeypatch.setitem(ds.DATASETS, "tiny", dataset)
    with pytest.raises(DataError, match=r"\(tiny test\): the split holds no examples"):
        load_dataset("tiny", tmp_path)
