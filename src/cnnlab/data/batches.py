"""In-memory batching: the whole split lives on the training device, no worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cnnlab.data.datasets import ImageSet


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The shuffled order of ``n`` examples for ``epoch``: a function of (seed, epoch) alone.

    >>> epoch_order(5, seed=0, epoch=1).equal(epoch_order(5, seed=0, epoch=1))
    True
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


class Batches:
    """Batches of (images scaled to [0, 1], labels) from one split held on ``device``.

    The uint8 pixels are moved to the device once; each batch is gathered and
    scaled there, as the book's ``ToTensor`` does, without copies through the host.
    """

    def __init__(
        self,
        split: ImageSet,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        # (N, H, W) grayscale or (N, C, H, W)
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.labels = torch.from_numpy(split.labels.astype(np.int64)).to(device)  # (N,)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        """Number of batches in one pass (the last one may be smaller)."""
        return -(-len(self.labels) // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def epoch(
        self, epoch: int = 0, start: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)``: x (B, C, H, W) float32 in [0, 1], y (B,) int64.

        Starts at batch ``start`` (to resume mid-epoch). With ``world`` > 1, yields this
        ``rank``'s share of each global batch: every ``world``-th example of it.
        """
        for index in self.indices(epoch, start, rank, world):
            yield self.gather(index)

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples ``index``, scaled to [0, 1] on the device as the book's ToTensor."""
        x = self.images.index_select(0, index)  # 10x faster than images[index] on a CPU
        x = (x.unsqueeze(1) if x.ndim == 3 else x).float().div_(255)  # (b, C, H, W)
        return x, self.labels.index_select(0, index)

    def indices(
        self, epoch: int = 0, start: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[torch.Tensor]:
        """The example indices of each batch that ``epoch`` yields, on the device."""
        n = self.num_examples
        order = epoch_order(n, self.seed, epoch, self.images.device) if self.shuffle else None
        for first in range(start * self.batch_size, n, self.batch_size):
            if order is None:
                index = torch.arange(
                    first, min(first + self.batch_size, n), device=self.images.device
                )
            else:
                index = order[first : first + self.batch_size]
            yield index[rank::world]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
