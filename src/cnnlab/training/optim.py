"""Optimizers and learning-rate schedules by name: the tables ``TrainConfig`` validates
its ``optimizer`` and ``schedule`` against, and the factories the trainer calls."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

Params = Iterable[nn.Parameter]


def _sgd(with_momentum: bool, nesterov: bool = False) -> Callable[..., torch.optim.Optimizer]:
    def make(
        params: Params, lr: float, weight_decay: float, momentum: float
    ) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum if with_momentum else 0.0,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )

    return make


def _adamw(
    params: Params, lr: float, weight_decay: float, _momentum: float
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


# name -> factory(params, lr, weight_decay, momentum); momentum is used where it applies
OPTIMIZERS: dict[str, Callable[[Params, float, float, float], torch.optim.Optimizer]] = {
    "sgd": _sgd(with_momentum=False),  # the book's: plain SGD
    "momentum": _sgd(with_momentum=True),
    "nesterov": _sgd(with_momentum=True, nesterov=True),
    "adamw": _adamw,
}


def _cosine(step: int, steps: int, warm: int = 0) -> float:
    """Linear warm-up over ``warm`` steps, then half a cosine from 1 down to 0."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


# name -> the learning-rate factor at (step, of steps); None: constant
SCHEDULES: dict[str, Callable[[int, int], float] | None] = {
    "constant": None,  # the book's
    "cosine": _cosine,
    "onecycle": lambda step, steps: _cosine(step, steps, warm=max(1, steps // 4)),
}


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (a key of :data:`OPTIMIZERS`) over ``model``'s parameters.

    >>> make_optimizer(nn.Linear(2, 1), "nesterov", lr=0.1).defaults["nesterov"]
    True
    """
    return OPTIMIZERS[name](model.parameters(), lr, weight_decay, momentum)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step learning-rate factor over ``steps`` optimizer steps (None: constant)."""
    factor = SCHEDULES[schedule]
    if factor is None:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, steps))
