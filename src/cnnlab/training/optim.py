"""Optimizers and learning-rate schedules by name: the tables ``TrainConfig`` validates
its ``optimizer`` and ``schedule`` against, and the factories the trainer calls."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

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


PEAK_AT = 0.3  # one-cycle: the share of the steps over which the rate rises
DIV, FINAL_DIV = 25.0, 1e4  # one-cycle: it starts at the peak / 25 and ends at that / 1e4
MOMENTUM_DIP = 0.1  # one-cycle: momentum falls this much while the rate rises, then returns


def _annealed(start: float, end: float, done: float) -> float:
    """From ``start`` to ``end`` along half a cosine, ``done`` (0 to 1) of the way."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * done))


def _one_cycle(step: int, steps: int) -> float:
    """Smith's one cycle, as torch's OneCycleLR and fastai's fit_one_cycle draw it: the
    rate rises from 1/25 of the peak over the first 30% of the steps and falls to 1/25e4
    of it by the last, both along half a cosine.

    >>> [round(_one_cycle(s, 100), 3) for s in (0, 29, 99)]
    [0.04, 1.0, 0.0]
    """
    rise = max(1, round(PEAK_AT * steps) - 1)
    if step <= rise:
        return _annealed(1 / DIV, 1.0, step / rise)
    return _annealed(1.0, 1 / (DIV * FINAL_DIV), (step - rise) / max(1, steps - 1 - rise))


# name -> the learning-rate factor at (step, of steps); None: constant
SCHEDULES: dict[str, Callable[[int, int], float] | None] = {
    "constant": None,  # the book's
    "cosine": _cosine,
    "onecycle": _one_cycle,  # momentum cycles the other way (OneCycle below)
    "warmup-cosine": lambda step, steps: _cosine(step, steps, warm=max(1, steps // 4)),
}


class OneCycle(torch.optim.lr_scheduler.LambdaLR):
    """The one-cycle schedule of the rate (``_one_cycle``), and of the momentum the other
    way: from the optimizer's momentum down by 0.1 while the rate rises, back up as it
    falls (torch's OneCycleLR cycles it between 0.95 and 0.85). Its state is LambdaLR's,
    the momentum itself being in the optimizer's, so checkpoints and resume are as for
    the other schedules."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.steps = steps
        self.top = [group.get("momentum", 0.0) for group in optimizer.param_groups]
        super().__init__(optimizer, lambda step: _one_cycle(step, steps))

    def state_dict(self) -> dict[str, Any]:
        """LambdaLR's state alone: the length and the top momentum are the schedule's
        arguments, given again when a resumed run builds it."""
        state = super().state_dict()
        for own in ("steps", "top"):
            state.pop(own, None)
        return state

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        rise = max(1, round(PEAK_AT * self.steps) - 1)
        step = min(self.last_epoch, self.steps - 1)
        if step <= rise:  # the momentum goes down as the rate goes up, and back
            dip = _annealed(0.0, 1.0, step / rise)
        else:
            dip = _annealed(1.0, 0.0, (step - rise) / max(1, self.steps - 1 - rise))
        for group, top in zip(self.optimizer.param_groups, self.top, strict=True):
            if top > 0:  # the momentum optimizers (plain SGD and AdamW keep theirs)
                group["momentum"] = top - MOMENTUM_DIP * dip


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
    if schedule == "onecycle":
        return OneCycle(optimizer, steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, steps))
