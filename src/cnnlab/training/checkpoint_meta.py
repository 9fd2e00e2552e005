"""What a checkpoint's metadata must hold, checked before anything of it is restored: a
checkpoint may come from elsewhere (a shared run directory), so every count, number,
optimizer group, schedule field and random state is checked for its type and range."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError
from cnnlab.training.config import FLOAT32_MAX

RNG_TORCH_BYTES = torch.get_rng_state().numel()


def check_meta(path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """The metadata's and the loop tensors' types, ranges and consistency, key by key.

    The digest catches accidental damage (a truncated copy, a flipped bit); it is no
    signature, and anyone can write a checkpoint with a fresh one, so every value is
    checked here as if it came from anywhere."""

    def bad(key: str, wanted: str) -> CheckpointError:
        return CheckpointError(f"{path}: {key} must be {wanted}, got {meta.get(key)!r:.80}")

    for key in ("epoch", "batch", "step", "seen"):
        if not _count(meta.get(key)):
            raise bad(key, "a non-negative integer")
    if not _number(meta.get("train_seconds"), low=0):
        raise bad("train_seconds", "a non-negative number")
    for key, fields in (("points", ("x", "train_loss", "train_acc")), ("history", ("epoch",))):
        rows = meta.get(key)
        if not isinstance(rows, list) or not all(
            isinstance(r, dict)
            and all(_number(r.get(f)) for f in fields)
            and all(_number(v) for k, v in r.items() if k != "type")
            for r in rows
        ):
            raise bad(key, f"a list of rows of numbers with {', '.join(fields)}")
    epochs = [r["epoch"] for r in meta["history"]]
    if len(epochs) != meta["epoch"] or meta["step"] < meta["batch"]:
        raise CheckpointError(
            f"{path}: epoch {meta['epoch']}, step {meta['step']}, batch {meta['batch']} and "
            f"{len(epochs)} epoch rows do not describe one run"
        )
    if epochs != list(range(1, len(epochs) + 1)):
        raise bad("history", "one row for each epoch done, in order")
    config = meta.get("config")
    if not isinstance(config, dict) or config.get("model") != meta.get("model"):
        raise bad("config", "the run's settings, naming its model")
    _check_optimizer(path, meta)
    _check_random_states(path, meta, tensors)
    for name in ("acc.loss_sum", "acc.correct"):
        if name not in tensors or tensors[name].dim() != 0:
            raise CheckpointError(f"{path}: the tensor {name} must be one number")
    loss, correct = tensors["acc.loss_sum"], tensors["acc.correct"]
    if not loss.is_floating_point() or not (math.isfinite(float(loss)) and float(loss) >= 0):
        raise CheckpointError(f"{path}: acc.loss_sum must be a finite sum of losses")
    if correct.is_floating_point() or not 0 <= int(correct) <= meta["seen"]:
        raise CheckpointError(
            f"{path}: acc.correct must be a count from 0 to seen ({meta['seen']})"
        )


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53


def _number(v: Any, low: float = -FLOAT32_MAX) -> bool:
    """A JSON number that float32 holds, at least ``low``."""
    return isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= FLOAT32_MAX


def _check_optimizer(path: Path, meta: dict[str, Any]) -> None:
    """param_groups, optim_scalars and scheduler: numbers where numbers belong."""
    groups, scalars, schedule = (
        meta.get("param_groups"),
        meta.get("optim_scalars"),
        meta.get("scheduler"),
    )
    settings = ("lr", "momentum", "dampening", "weight_decay", "eps", "initial_lr")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict)
        and _number(g.get("lr"), low=0)
        and all(_number(g[k], low=0) for k in settings if k in g)
        and all(_number(b, low=0) for b in g.get("betas", []))
        and isinstance(g.get("params"), list)
        and all(_count(i) for i in g["params"])
        for g in groups
    ):
        raise CheckpointError(
            f"{path}: param_groups must be the optimizer's groups, each with an lr and "
            f"parameter indices, every rate a number from 0 to {FLOAT32_MAX:.3g}"
        )
    if not isinstance(scalars, dict) or not all(
        isinstance(slots, dict) and all(_number(v) for v in slots.values())
        for slots in scalars.values()
    ):
        raise CheckpointError(f"{path}: optim_scalars must be tables of numbers")
    if schedule is not None and not (
        isinstance(schedule, dict)
        and set(schedule) <= SCHEDULER_KEYS
        and _count(schedule.get("last_epoch"))
        and all(
            _number(v, low=0) for v in schedule.get("base_lrs", []) + schedule.get("_last_lr", [])
        )
    ):
        raise CheckpointError(f"{path}: scheduler must be the schedule's position and rates")


# What torch's LambdaLR saves (its load_state_dict sets each as an attribute).
SCHEDULER_KEYS = frozenset(
    {
        "base_lrs",
        "last_epoch",
        "verbose",
        "_step_count",
        "_get_lr_called_within_step",
        "_last_lr",
        "lr_lambdas",
        "_is_initial",
    }
)


def _check_random_states(
    path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """The generators' states, in the shapes and ranges each generator takes."""
    torch_state, numpy_state = tensors.get("rng.torch"), tensors.get("rng.numpy")
    if (
        torch_state is None
        or torch_state.dtype != torch.uint8
        or torch_state.shape != (RNG_TORCH_BYTES,)
    ):
        raise CheckpointError(f"{path}: rng.torch must be {RNG_TORCH_BYTES} bytes")
    if numpy_state is None or numpy_state.shape != (624,) or numpy_state.is_floating_point():
        raise CheckpointError(f"{path}: rng.numpy must be 624 integers")
    rng_numpy, rng_python = meta.get("rng_numpy"), meta.get("rng_python")
    if not (
        isinstance(rng_numpy, list)
        and len(rng_numpy) == 4
        and rng_numpy[0] == "MT19937"
        and _count(rng_numpy[1])
        and rng_numpy[1] <= 624
        and rng_numpy[2] in (0, 1)
        and _number(rng_numpy[3])
    ):
        raise CheckpointError(f"{path}: rng_numpy must be numpy's MT19937 state")
    if not (
        isinstance(rng_python, list)
        and len(rng_python) == 3
        and rng_python[0] == 3
        and isinstance(rng_python[1], list)
        and len(rng_python[1]) == 625
        and all(_count(v) and v < 2**32 for v in rng_python[1])
        and (rng_python[2] is None or _number(rng_python[2]))
    ):
        raise CheckpointError(f"{path}: rng_python must be Python's random state")
