"""Runs built for the tests from tensors in memory: a few batches, no dataset files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.accel import cpu
from cnnlab.models import create_model


def four_batch_run(
    tmp_path: Path, model: nn.Module | None = None, lr: float = 0.5, **config: object
):  # type: ignore[no-untyped-def]
    """A run of 4 batches of 16 random images; ``model`` by default the book's LeNet, the
    fused kernels forced (``fast=True``) unless ``config`` says otherwise."""
    from cnnlab.data import ImageSet
    from cnnlab.training import TrainConfig
    from cnnlab.training.parts import Parts
    from cnnlab.training.run import Run

    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), generator=rng, dtype=torch.uint8).numpy()
    labels = (images.mean(axis=(1, 2)) > 127).astype("uint8")
    torch.manual_seed(0)
    model = model or create_model("lenet", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    parts = Parts(model, optimizer, ImageSet(images, labels), ImageSet(images, labels), ("a", "b"))
    tmp_path.mkdir(exist_ok=True)
    config = {"fast": True, "batch_size": 16, **config}
    return Run(TrainConfig(quiet=True, **config), parts, tmp_path)  # type: ignore[arg-type]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cnnlab cache (the kernels are built into it once per test module)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    cpu._library.cache_clear()
    yield tmp_path / "fresh-cache" / "cnnlab"
    cpu._library.cache_clear()


def slow_down(monkeypatch: pytest.MonkeyPatch, kind: type[nn.Module], seconds: float) -> None:
    """Make every forward of ``kind`` take ``seconds`` longer."""
    forward = kind.forward
    monkeypatch.setattr(kind, "forward", lambda self, x: time.sleep(seconds) or forward(self, x))


def norm_block_model() -> nn.Sequential:
    """A conv -> batch norm -> ReLU -> max pool model whose norm block the kernel fuses."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 14 * 14, 2),
    )
