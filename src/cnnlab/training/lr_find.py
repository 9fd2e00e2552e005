"""The learning-rate range test: a copy of the model trained for a few hundred steps at a
learning rate that grows exponentially, the loss recorded at each; the suggestion is where
the smoothed loss falls fastest."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnlab.data import Batches
from cnnlab.device import configure_device, resolve_device
from cnnlab.errors import ConfigError
from cnnlab.rundir import create_run_dir
from cnnlab.training.config import TrainConfig
from cnnlab.training.optim import make_optimizer
from cnnlab.training.trainer import build_parts

PLOT = "lr_find.png"
SMOOTHING = 0.9  # weight of the past in the loss's moving average
BLOWN_UP = 4.0  # stop once the smoothed loss exceeds this many times its minimum


@dataclass
class LrFindResult:
    """The learning rates tried, the smoothed loss at each, and the suggestion."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed, bias-corrected
    suggestion: float = 0.0
    how: str = ""
    out_dir: Path = field(default_factory=Path)  # where lr_find.png is

    def figure(self) -> Figure:
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.axvline(self.suggestion, color="C3", linestyle="--",
                   label=f"suggested {self.suggestion:.3g}")  # fmt: skip
        ax.legend()
        ax.grid(alpha=0.3)
        return fig


def lr_find(config: TrainConfig, steps: int = 300, start_lr: float = 1e-4, end_lr: float = 10.0,
            out_dir: str | Path | None = None) -> LrFindResult:  # fmt: skip
    """Run the range test for ``config``'s model, data, optimizer and batch size (its
    learning rate and schedule are what is being chosen, and are ignored), and write
    ``lr_find.png`` into ``out_dir`` (default: a fresh directory under ``runs/``).

    The model trained is a copy: the one ``config`` builds is left as it was initialised.
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"need 0 < start lr < end lr, got {start_lr} and {end_lr}")
    if steps < 10:
        raise ConfigError(f"steps must be at least 10 for a curve to read, got {steps}")
    device = resolve_device(config.device)
    configure_device(device)
    parts = build_parts(config, device)
    model = copy.deepcopy(parts.model).train()
    optimizer = make_optimizer(model, config.optimizer, start_lr, config.weight_decay,
                               config.momentum)  # fmt: skip
    batches = Batches(parts.train_set, config.batch_size, device, True, config.seed)
    result = LrFindResult()
    average, best = 0.0, math.inf
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    step = 0
    while step < steps:
        for x, y in batches.epoch(step // len(batches)):
            lr = start_lr * growth**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            step += 1
            average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
            smoothed = average / (1 - SMOOTHING**step)
            if not math.isfinite(smoothed) or smoothed > BLOWN_UP * best:
                step = steps  # the loss has blown up: the rest of the range says nothing
                break
            best = min(best, smoothed)
            result.lrs.append(lr)
            result.losses.append(smoothed)
            if step == steps:
                break
    result.suggestion, result.how = suggest(result.lrs, result.losses)
    directory, lock = create_run_dir(Path(out_dir) if out_dir else None, f"lr-find-{config.model}")
    try:
        result.figure().savefig(directory / PLOT, dpi=130)
    finally:
        lock.release()
    result.out_dir = directory
    return result


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, str]:
    """The learning rate where the smoothed loss falls fastest against log(lr), before
    its minimum; and a sentence saying so.

    >>> suggest([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.3, 2.2, 1.0, 0.9, 5.0])[0]
    0.01
    """
    if len(lrs) < 3:
        raise ConfigError("the loss blew up at once: lower --start-lr and run lr-find again")
    lowest = min(range(len(losses)), key=losses.__getitem__)
    span = max(lowest, 2)
    slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(span)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    lr = lrs[steepest]
    how = (f"where the smoothed loss fell fastest against log(lr) ({slopes[steepest]:.2f} per "
           f"e-fold), before its minimum {losses[lowest]:.3f} at lr {lrs[lowest]:.3g}")  # fmt: skip
    return lr, how
