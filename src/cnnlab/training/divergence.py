"""A run that blew up: when to call it so, and what to tell the user."""

from __future__ import annotations

import math
from pathlib import Path

from cnnlab.rundir import CHECKPOINT
from cnnlab.training.control import Diverged

DIVERGED_FACTOR = 10  # stop when the average loss exceeds this many times ln(classes)


def loss_limit(classes: int) -> float:
    """A loss this far above a uniform guess (ln classes) means the run has blown up:
    with saturating sigmoids the loss can stay finite while the weights are ruined."""
    return DIVERGED_FACTOR * math.log(classes)


def advice(lr: float, weight_decay: float) -> str:
    """What to change, from the values the run diverged with (always finite).

    >>> advice(0.5, 0.0)
    'Try a lower learning rate, e.g. --lr 0.05.'
    """
    tip = f"Try a lower learning rate, e.g. --lr {max(lr / 10, 1e-300):g}."
    if weight_decay * lr >= 1:  # each step would overshoot zero: the weights grow and flip
        tip += (
            f" --weight-decay {weight_decay:g} times --lr is {weight_decay * lr:g}, at "
            "least 1 per step: lower the weight decay too."
        )
    return tip


def diverged(
    what: str, where: tuple[int, int], classes: int, lr: float, decay: float, run_dir: Path
) -> Diverged:
    """The error for a loss that ``what`` (is not a finite number, averages ...) at
    ``where`` (epoch, step; 1-based) of a run at rate ``lr`` and weight decay ``decay``,
    saying what to try and what is left on disk."""
    return Diverged(
        f"training diverged: the loss {what} at epoch {where[0]}, step {where[1]} (lr {lr}; a "
        f"model that guesses scores {math.log(classes):.2f}). {advice(lr, decay)} "
        + (
            f"The last good checkpoint remains in {run_dir}."
            if (run_dir / CHECKPOINT).exists()
            else "No checkpoint had been written yet."
        )
    )
