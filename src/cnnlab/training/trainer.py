"""The training loop, split into verbs: train_step, train_epoch, evaluate, train."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnlab.data import Batches, get_dataset, load_dataset
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.logs import ensure_logging, log
from cnnlab.models import create_model, init_weights
from cnnlab.training.checkpoint import save_model, write_json
from cnnlab.training.config import TrainConfig
from cnnlab.training.metrics import accuracy, confusion_matrix
from cnnlab.viz import LiveCurves, in_notebook, plot_curves

POINTS_PER_EPOCH = 5  # intra-epoch curve points, as the book's animator draws
EVAL_BATCH = 2000  # examples per evaluation batch: larger than training, same result


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind, ok in available.items() if ok))
    if not available.get(name, False):
        usable = ", ".join(kind for kind, ok in available.items() if ok)
        raise ConfigError(
            f"device {name!r} is not available in this PyTorch build or machine; "
            f"use --device auto or one of: {usable}"
        )
    return torch.device(name)


def configure_device(device: torch.device) -> None:
    """Per-process numeric settings for ``device``."""
    if device.type == "cpu":
        # Sigmoid activations push values into the denormal range, where x86 float
        # arithmetic is ~20x slower; flushing them to zero changes no result we report.
        torch.set_flush_denormal(True)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch; returns (summed loss, number correct) as device tensors."""
    logits = model(x)  # (B, classes)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss.detach() * len(y), (logits.argmax(dim=1) == y).sum()


@dataclass
class EpochStats:
    loss: float
    acc: float
    seconds: float  # training time only
    examples: int


PointCallback = Callable[[float, float, float], None]  # (fractional epoch, loss, acc)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    epoch: int,
    on_point: PointCallback | None = None,
    progress: bool = False,
) -> EpochStats:
    """One pass over ``batches``. Metrics stay on the device; the host reads them only
    at the few curve points, so the loop never waits on the device otherwise."""
    model.train()
    device = batches.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    num_batches = len(batches)
    every = max(1, num_batches // POINTS_PER_EPOCH)  # the book divides by zero below 5 batches
    start = time.perf_counter()
    with tqdm(
        total=num_batches, desc=f"epoch {epoch + 1}", disable=not progress, leave=False
    ) as bar:
        for i, (x, y) in enumerate(batches.epoch(epoch)):
            batch_loss, batch_correct = train_step(model, optimizer, x, y)
            loss_sum += batch_loss
            correct += batch_correct
            seen += len(y)
            bar.update()
            if (i + 1) % every == 0 or i == num_batches - 1:
                loss, acc = loss_sum.item() / seen, correct.item() / seen
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", ex_s=f"{seen / elapsed:,.0f}")
                if on_point is not None:
                    on_point(epoch + (i + 1) / num_batches, loss, acc)
    return EpochStats(loss, acc, time.perf_counter() - start, seen)


@dataclass
class TrainResult:
    """What a run produced: its directory and its per-epoch history."""

    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    examples_per_sec: float = 0.0
    device: str = "cpu"

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


def default_run_dir(model: str) -> Path:
    stem = Path("runs") / f"{model}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = stem, 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}")
    return path


def check_run_dir(path: Path) -> None:
    """Refuse a run directory that holds files, or that cannot be created."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(
            f"{path} already exists and is not empty; cnnlab never overwrites a run. "
            "Choose another --out-dir or leave it out for a fresh one under runs/."
        )
    parent = next(p for p in [path, *path.parents] if p.exists())
    if not parent.is_dir() or not _writable(parent):
        raise CheckpointError(f"cannot create {path}: {parent} is not a writable directory")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def environment(device: torch.device) -> dict[str, Any]:
    """Library versions and device, recorded with every run."""
    from cnnlab import __version__

    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "threads": torch.get_num_threads(),
    }


def train(config: TrainConfig) -> TrainResult:
    """Run ``config`` end to end: data, model, epochs, metrics, figure, weights.

    Writes into the run directory: ``config.json``, ``metrics.jsonl``, ``curves.png``,
    ``model.safetensors`` and ``model.json``.
    """
    ensure_logging()
    run_dir = Path(config.out_dir) if config.out_dir else default_run_dir(config.model)
    check_run_dir(run_dir)
    device = resolve_device(config.device)
    configure_device(device)
    dataset = get_dataset(config.dataset)
    train_set, test_set = load_dataset(dataset, config.data_dir)

    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=len(dataset.classes))
    init_weights(model, config.init)
    if device.type == "cpu":
        # Measured on 2 AVX2 cores: oneDNN runs LeNet's few-channel convolutions ~1.35x
        # faster in channels-last (see the README's speed section).
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    train_batches = Batches(train_set, config.batch_size, device, shuffle=True, seed=config.seed)
    test_batches = Batches(test_set, EVAL_BATCH, device)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {**config.to_dict(), "environment": environment(device)})
    progress = not config.quiet and sys.stderr.isatty()
    live = LiveCurves() if not config.quiet and in_notebook() else None
    result = TrainResult(run_dir, device=str(device))
    points: list[dict[str, Any]] = []
    train_seconds = 0.0
    wall_start = time.perf_counter()

    with open(run_dir / "metrics.jsonl", "w") as metrics:

        def record(row: dict[str, Any]) -> None:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()

        def on_point(x: float, loss: float, acc: float) -> None:
            points.append({"x": x, "train_loss": loss, "train_acc": acc})
            record({"type": "point", **points[-1]})
            if live is not None:
                live.update(points, result.history)

        for epoch in range(config.epochs):
            stats = train_epoch(model, optimizer, train_batches, epoch, on_point, progress)
            test_acc = accuracy(confusion_matrix(model, test_batches, len(dataset.classes)))
            train_seconds += stats.seconds
            row = {
                "type": "epoch",
                "epoch": epoch + 1,
                "train_loss": stats.loss,
                "train_acc": stats.acc,
                "test_acc": test_acc,
                "examples_per_sec": stats.examples / stats.seconds,
                "elapsed": time.perf_counter() - wall_start,
            }
            record(row)
            result.history.append(row)
            if not config.quiet:
                log.info(
                    "epoch %d/%d: loss %.3f, train acc %.3f, test acc %.3f, %.0f ex/s, %.1fs",
                    epoch + 1, config.epochs, stats.loss, stats.acc, test_acc,
                    row["examples_per_sec"], row["elapsed"],
                )  # fmt: skip

    result.examples_per_sec = train_batches.num_examples * config.epochs / train_seconds
    save_model(
        run_dir,
        model,
        {
            "model": config.model,
            "model_options": {"num_classes": len(dataset.classes)},
            "dataset": dataset.name,
            "classes": list(dataset.classes),
            "preprocessing": {
                "input_shape": [1, *train_set.images.shape[1:]],
                "grayscale": True,
                "scale": "pixel / 255",
                "background": "dark (0), as in the dataset",
            },
            "final": result.final,
        },
    )
    fig = plot_curves(points, result.history)
    fig.savefig(run_dir / "curves.png", dpi=150)
    final = result.final
    log.info(
        "loss %.3f, train acc %.3f, test acc %.3f",
        final["train_loss"], final["train_acc"], final["test_acc"],
    )  # fmt: skip
    log.info("%.1f examples/sec on %s", result.examples_per_sec, device)
    log.info("run saved to %s", run_dir)
    return result
