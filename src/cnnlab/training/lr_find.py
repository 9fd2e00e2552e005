"""The learning-rate range test: a copy of the model trained for a few hundred steps at a
learning rate that grows exponentially, the loss recorded at each.

The suggestion is the peak rate for a one-cycle schedule, as Smith's range test picks it:
the highest rate at which the loss still falls, just before it turns up towards
divergence. That is where the smoothed loss is lowest, less the moving average's lag: the
average trails the loss by about 1 / (1 - SMOOTHING) steps, so its minimum shows the loss
of the rate :data:`LAG` steps earlier. (fastai's ``valley``, the middle of the longest
falling stretch, is a safe rate for constant training; as a one-cycle peak it was 0.012
and 0.068 behind the best rate of a grid for lenet-relu-max and lenet-bn: docs/training.md.)
There is no suggestion where the loss never falls clearly below both a guessing model's (ln
of the class count) and its own starting value: a curve that shows no learning cannot say
which rate learns best (the book's sigmoid LeNet, for one, learns nothing within 300 steps
at any rate)."""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from cnnlab.accel.cores import FreeCores
from cnnlab.data import Batches
from cnnlab.device import numerics, resolve_device
from cnnlab.errors import ConfigError
from cnnlab.rundir import create_run_dir
from cnnlab.training.checkpoint import TrainState
from cnnlab.training.config import FLOAT32_MAX, TrainConfig
from cnnlab.training.optim import make_optimizer
from cnnlab.training.parts import build_parts
from cnnlab.training.step import Step

PLOT = "lr_find.png"
# TrainConfig fields the range test has no use for: given to `cnnlab lr-find`, refused.
IGNORED = (
    "lr",
    "epochs",
    "schedule",
    "augment",
    "tta",
    "precision",
    "fast",
    "remeasure",
    "compile",
    "keep",
    "early_stop",
    "checkpoint_every",
    "resume",
    "nproc",
    "max_restarts",
    "tensorboard",
)
SMOOTHING = 0.9  # weight of the past in the loss's moving average
BLOWN_UP = 4.0  # stop once the smoothed loss exceeds this many times its minimum
SETTLE = round(2 / (1 - SMOOTHING))  # points before the moving average has settled
LEARNED = 0.9  # learning means a loss below this share of both guessing's and the start's
LAG = round(1 / (1 - SMOOTHING))  # steps the moving average trails the loss by


@dataclass
class LrFindResult:
    """The learning rates tried, the smoothed loss at each, and the suggestion: a rate, or
    None where the curve shows no learning (``how`` then says why and what to try)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed, bias-corrected
    suggestion: float | None = None
    how: str = ""
    guess: float = 0.0  # the loss of a model that guesses: ln(classes)
    out_dir: Path = field(default_factory=Path)  # where lr_find.png is

    def figure(self) -> Figure:
        """The curve; with a suggestion, marked with it and the guessing loss."""
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        if self.suggestion is not None:
            ax.axvline(
                self.suggestion,
                color="C3",
                linestyle="--",
                label=f"suggested {self.suggestion:.3g}",
            )
            ax.axhline(self.guess, color="0.5", linestyle=":", label=f"guessing: {self.guess:.3g}")
            ax.legend()
        ax.grid(alpha=0.3)
        return fig


def lr_find(
    config: TrainConfig,
    steps: int = 300,
    start_lr: float = 1e-4,
    end_lr: float = 10.0,
    out_dir: str | Path | None = None,
) -> LrFindResult:
    """Run the range test for ``config``'s model, data, optimizer and batch size (its
    learning rate and schedule are what is being chosen, and are ignored), and write
    ``lr_find.png`` into ``out_dir`` (default: a fresh directory under ``runs/``).

    The model trained is a copy: the one ``config`` builds is left as it was initialised.
    """
    if not 0 < start_lr < end_lr <= FLOAT32_MAX:
        raise ConfigError(
            f"need 0 < start lr < end lr <= {FLOAT32_MAX:.4g} (what float32 holds), got "
            f"{start_lr} and {end_lr}"
        )
    if steps < 10:
        raise ConfigError(f"steps must be at least 10 for a curve to read, got {steps}")
    device = resolve_device(config.device)
    with numerics(device):
        progress = sys.stderr.isatty() and not config.quiet
        result = range_test(config, device, steps, start_lr, end_lr, progress)
    directory, lock = create_run_dir(Path(out_dir) if out_dir else None, f"lr-find-{config.model}")
    try:
        result.figure().savefig(directory / PLOT, dpi=130)
    finally:
        lock.release()
    result.out_dir = directory
    return result


def range_test(
    config: TrainConfig,
    device: torch.device,
    steps: int,
    start_lr: float,
    end_lr: float,
    progress: bool = False,
) -> LrFindResult:
    """Train a copy of ``config``'s model for ``steps`` steps at learning rates growing
    geometrically from ``start_lr`` to ``end_lr``; the smoothed loss at each, and the
    suggestion read from it."""
    parts = build_parts(config, device)
    model = copy.deepcopy(parts.model).train()
    optimizer = make_optimizer(
        model, config.optimizer, start_lr, config.weight_decay, config.momentum
    )
    batches = Batches(parts.train_set, config.batch_size, device, True, config.seed)
    cores = FreeCores.on(device, config.threads)
    step_on = Step(batches, model, optimizer, TrainState(), label_smoothing=config.label_smoothing)
    result = LrFindResult()
    average, best = 0.0, math.inf
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    step = 0
    bar = tqdm(total=steps, desc="lr-find", unit="step", leave=False, disable=not progress)
    while step < steps:
        for index in batches.indices(step // len(batches)):
            lr = start_lr * growth**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, _ = step_on(index, len(index))
            cores.tick()
            step += 1
            bar.update()
            loss = (loss_sum / len(index)).item()  # the batch's mean, as cross-entropy gives it
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            smoothed = average / (1 - SMOOTHING**step)
            if not math.isfinite(smoothed) or smoothed > BLOWN_UP * best:
                step = steps  # the loss has blown up: the rest of the range says nothing
                break
            best = min(best, smoothed)
            result.lrs.append(lr)
            result.losses.append(smoothed)
            if step == steps:
                break
    bar.close()
    result.guess = math.log(len(parts.classes))
    result.suggestion, result.how = suggest(result.lrs, result.losses, result.guess)
    return result


def suggest(lrs: list[float], losses: list[float], guess: float) -> tuple[float | None, str]:
    """The rate :data:`LAG` steps before the smoothed loss's lowest point (the one-cycle
    peak; see the module's docstring), or None where the loss shows no learning; and a
    sentence saying which and why.

    >>> lrs = [10 ** (i / 10 - 4) for i in range(50)]  # 1e-4 up to about 8
    >>> falling = [2.3 - 0.05 * max(0, i - 20) for i in range(40)] + [5.0] * 10
    >>> round(suggest(lrs, falling, guess=2.3)[0], 4)  # lowest at 0.794 (i = 39), less 10
    0.0794
    >>> suggest(lrs, [2.3] * 50, guess=2.3)[0] is None
    True
    """
    if len(lrs) < 3:
        raise ConfigError("the loss blew up at once: lower --start-lr and run lr-find again")
    settle = min(SETTLE, len(lrs) // 3)
    lowest = min(range(settle, len(losses)), key=losses.__getitem__)
    start, low = losses[settle], losses[lowest]
    if not (low < LEARNED * guess and low < LEARNED * start):
        below = "a guessing model's" if low >= LEARNED * guess else "its own starting value"
        return None, (
            f"no reliable suggestion: within {len(lrs)} steps the smoothed loss never fell "
            f"clearly below {below} (lowest {low:.3f} at lr {lrs[lowest]:.3g}; guessing "
            f"scores {guess:.3f}, the settled start {start:.3f}), so the curve cannot say "
            f"which rate learns best. Try more steps (--steps {2 * len(lrs)}), a wider range "
            "(--start-lr, --end-lr), or a model that learns sooner (--model lenet-relu-max "
            "or lenet-bn)"
        )
    at = max(settle, lowest - LAG)
    return lrs[at], (
        f"the highest rate at which the loss still falls, for a one-cycle peak: the smoothed "
        f"loss is lowest ({low:.3f}) at lr {lrs[lowest]:.3g}, and the average trails the "
        f"loss by {LAG} steps, back to lr {lrs[at]:.3g} (guessing scores {guess:.3f})"
    )
