"""The device a run uses and the numeric settings it runs under, put back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab.data import datasets as ds
from cnnlab.device import denormals_flushed, numerics, resolve_device
from cnnlab.errors import CnnlabError, ConfigError


def subnormal_survives() -> bool:
    return float(torch.tensor([1e-40]) * 1) != 0


@pytest.fixture
def plain_numerics() -> Iterator[None]:
    """A process as a notebook starts it: subnormals kept, matmuls in full float32; and
    put back so whatever the test does leaves the rest of the suite alone."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_flush_denormal(False)
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)


def test_unknown_device_names_the_usable_ones() -> None:
    with pytest.raises(ConfigError, match=r"device 'tpu' is not available .* one of: .*cpu"):
        resolve_device("tpu")


def test_numerics_flush_inside_and_restore_everything_after(plain_numerics: None) -> None:
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    threads = torch.get_num_threads()
    with numerics(torch.device("cpu")):
        assert denormals_flushed() and not subnormal_survives()
        torch.set_num_threads(1)
        torch.set_float32_matmul_precision("medium")
    assert subnormal_survives() and not denormals_flushed()
    assert torch.get_num_threads() == threads
    assert torch.get_float32_matmul_precision() == "highest"
    with pytest.raises(RuntimeError), numerics(torch.device("cpu")):
        raise RuntimeError("a failing block")
    assert subnormal_survives()


@pytest.mark.e2e
def test_train_leaves_the_process_as_it_found_it(
    plain_numerics: None, tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    from cnnlab.training import TrainConfig, train

    _, directory = tiny_dataset
    threads = torch.get_num_threads()
    config = dict(dataset="tiny", data_dir=str(directory), batch_size=32, device="cpu", quiet=True)
    train(TrainConfig(epochs=1, out_dir=str(tmp_path / "ok"), **config))  # type: ignore[arg-type]
    assert subnormal_survives()
    assert torch.get_num_threads() == threads
    assert torch.get_float32_matmul_precision() == "highest"
    with pytest.raises(CnnlabError, match=r"diverged|not a number|inf"):
        train(TrainConfig(epochs=1, lr=1e30, out_dir=str(tmp_path / "bad"), **config))  # type: ignore[arg-type]
    assert subnormal_survives()


def test_a_book_loader_flushes_only_while_it_is_iterated(
    plain_numerics: None, tiny_dataset: tuple[ds.Dataset, Path]
) -> None:
    from cnnlab.compat.d2l.classic import Loader
    from cnnlab.data import Batches, load_dataset

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    dataset, directory = tiny_dataset
    train_set, _ = load_dataset(dataset, directory)
    during = [subnormal_survives() for _ in Loader(Batches(train_set, 32), None)]
    assert during == [False] * 3 and subnormal_survives()
    next(iter(Loader(Batches(train_set, 32), None)))  # a pass left unfinished, as the book does
    assert subnormal_survives()
