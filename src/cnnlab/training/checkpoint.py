"""The full training state for resuming (``checkpoint.safetensors``): weights, optimizer,
position in the run, random states, the epoch's sums and the metrics so far.

Nothing here unpickles: safetensors holds only tensors, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
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
from cnnlab.training.checkpoint_meta import check_meta

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

    def epoch_row(
        self, loss: float, correct: float, seen: int, accuracies: dict[str, float], start: float
    ) -> dict[str, Any]:
        """The metrics row of the epoch just trained, from its sums over all ranks (loss,
        correct, seen) and the accuracies evaluated after it; ``start``: the run's start
        (``time.perf_counter()``)."""
        seconds = self.train_seconds - sum(r.get("train_seconds", 0.0) for r in self.history)
        return {
            "type": "epoch",
            "epoch": self.epoch + 1,
            "train_loss": loss / seen,
            "train_acc": correct / seen,
            **accuracies,
            "examples_per_sec": seen / max(seconds, 1e-9),
            "train_seconds": seconds,
            "elapsed": time.perf_counter() - start,
        }


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
