"""The full training state for resuming (``checkpoint.safetensors``): weights, optimizer,
position in the run, random states, the epoch's sums and the metrics so far.

Nothing here unpickles: safetensors holds only tensors, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from cnnlab.errors import CheckpointError
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.rundir import CHECKPOINT

CHECKPOINT_FORMAT = "cnnlab-checkpoint-2"  # 2: the digest covers the metadata too
READABLE = ("cnnlab-checkpoint-1", CHECKPOINT_FORMAT)


@dataclass
class TrainState:
    """Where a run is: everything besides the model and optimizer needed to continue it."""

    epoch: int = 0  # epoch in progress, 0-based
    batch: int = 0  # batches of that epoch already trained
    step: int = 0  # optimizer steps in all
    seen: int = 0  # examples of this epoch seen (by this process)
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    train_seconds: float = 0.0
    points: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def sums_to(self, device: torch.device) -> None:
        """Keep the epoch's sums on ``device`` (where the steps add to them)."""
        self.loss_sum, self.correct = self.loss_sum.to(device), self.correct.to(device)


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, and over the metadata
    (but its digest) as canonical JSON: catches any changed byte of either."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if meta is not None:
        rest = {k: v for k, v in meta.items() if k != "digest"}
        h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Write model, optimizer, RNG and loop state to ``run_dir/checkpoint.safetensors``.

    One file, written to a temporary name, fsynced and renamed: the previous checkpoint
    stays whole until the new one is complete.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{slot}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    np_state: Any = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    tensors["acc.loss_sum"] = state.loss_sum.detach().cpu().reshape(())
    tensors["acc.correct"] = state.correct.detach().cpu().reshape(())
    python_state = random.getstate()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": config["model"],
        "config": config,
        "epoch": state.epoch,
        "batch": state.batch,
        "step": state.step,
        "seen": state.seen,
        "train_seconds": state.train_seconds,
        "points": state.points,
        "history": state.history,
        "param_groups": optim["param_groups"],
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "optim_scalars": {
            str(i): {k: v for k, v in slots.items() if not isinstance(v, torch.Tensor)}
            for i, slots in optim["state"].items()
        },
        "rng_numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "rng_python": [python_state[0], list(python_state[1]), python_state[2]],
    }
    meta["digest"] = _digest(tensors, meta)
    blob = save_safetensors(tensors, metadata={"cnnlab": json.dumps(meta)})
    atomic_write_bytes(run_dir / CHECKPOINT, blob)


def read_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of ``run_dir``'s checkpoint, checked for damage and tampering."""
    path = run_dir / CHECKPOINT
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"no checkpoint in {run_dir} ({CHECKPOINT} missing): nothing to resume"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from e
    try:
        tensors = load_safetensors(blob)  # validates the header and every tensor's extent
        header_size = int.from_bytes(blob[:8], "little")
        raw = json.loads(blob[8 : 8 + header_size]).get("__metadata__", {}).get("cnnlab")
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(
            f"{path}: damaged or truncated, not a valid safetensors file ({e})"
        ) from e
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") not in READABLE:
        raise CheckpointError(f"{path}: not a cnnlab training checkpoint ({CHECKPOINT_FORMAT})")
    covered = meta if meta["format"] == CHECKPOINT_FORMAT else None  # format 1: tensors only
    if meta.get("digest") != _digest(tensors, covered):
        raise CheckpointError(
            f"{path}: the contents do not match the checkpoint's SHA-256: the file was changed "
            "after it was written. Resume from an intact copy or start a new run."
        )
    check_meta(path, meta, tensors)
    return tensors, meta


FLOAT32_MAX = 3.4028234663852886e38
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


def load_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> TrainState:
    """Restore model, optimizer, schedule and RNGs from ``run_dir``; return the loop state."""
    tensors, meta = read_checkpoint(run_dir)
    try:
        return _restore(run_dir, tensors, meta, model, optimizer, scheduler)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{run_dir / CHECKPOINT}: cannot be restored: {e!r}") from e


def _restore(
    run_dir: Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> TrainState:
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT}: the weights do not fit model {meta.get('model')!r}: {e}"
        ) from e
    optim_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            optim_state.setdefault(int(index), {})[slot] = value
    for index, scalars in meta["optim_scalars"].items():
        optim_state.setdefault(int(index), {}).update(scalars)
    try:
        optimizer.load_state_dict({"state": optim_state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{run_dir / CHECKPOINT}: optimizer state does not fit: {e}") from e
    if scheduler is not None and meta.get("scheduler"):
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = meta["rng_numpy"]
    np.random.set_state(
        (name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    return TrainState(
        epoch=meta["epoch"],
        batch=meta["batch"],
        step=meta["step"],
        seen=meta["seen"],
        loss_sum=tensors["acc.loss_sum"],
        correct=tensors["acc.correct"],
        train_seconds=meta["train_seconds"],
        points=meta["points"],
        history=meta["history"],
    )


def checkpoint_config(run_dir: Path) -> tuple[dict[str, Any], int]:
    """The config stored in ``run_dir``'s checkpoint, and the epochs it completed."""
    meta = read_checkpoint(run_dir)[1]
    config: dict[str, Any] = meta["config"]
    return config, int(meta["epoch"])
