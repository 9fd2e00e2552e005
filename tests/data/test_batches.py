import numpy as np
import torch

from cnnlab.data import Batches, ImageSet, epoch_order


def make_set(n: int = 10) -> ImageSet:
    images = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2) * 6
    return ImageSet(images, np.arange(n, dtype=np.uint8) % 10)


def test_batches_shapes_and_scaling() -> None:
    batches = Batches(make_set(), batch_size=4)
    got = list(batches)
    assert len(batches) == len(got) == 3
    x, y = got[0]
    assert x.shape == (4, 1, 2, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.max() <= 1 and x.min() >= 0
    assert torch.equal(x[1, 0], torch.tensor([[24, 30], [36, 42]]) / 255)
    assert [len(y) for _, y in got] == [4, 4, 2]


def test_shuffle_is_a_function_of_seed_and_epoch() -> None:
    batches = Batches(make_set(), batch_size=10, shuffle=True, seed=3)
    first = next(iter(batches.epoch(1)))[1]
    assert torch.equal(first, next(iter(batches.epoch(1)))[1])
    assert not torch.equal(first, next(iter(batches.epoch(2)))[1])
    assert sorted(first.tolist()) == list(range(10))
    assert not torch.equal(epoch_order(100, 0, 0), epoch_order(100, 1, 0))
