"""Which way of running a model's training step is faster on this machine: measured the
first time a model's shapes train here, then remembered.

The fused CPU kernels are faster than PyTorch's layers on the machines they were tuned
on; on another CPU (another instruction set, cache, core count) they may not be. So the
trainer hands :func:`faster` both networks and a function that runs one training step
(forward, loss, backward) through either: each is timed on a few steps, in turns, and the
faster is used. The answer is kept in cnnlab's cache under a key of everything that
changes it (the CPU, the thread count, torch's version, the kernels' build, the model and
the batch's shape), so the next run of the same shapes starts at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.fsutil import atomic_write_bytes, user_cache

ROUNDS, STEPS, BUDGET_S = 5, 2, 3.0  # rounds of STEPS steps each, in turns; time budget


@dataclass(frozen=True)
class Choice:
    """The path taken, each candidate's measured milliseconds per step, and whether the
    numbers come from the cache (measured by an earlier run)."""

    name: str
    ms: dict[str, float]
    cached: bool


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_file() -> Path:
    return user_cache() / "kernels" / "choices.json"


def choice_key(model: nn.Module, example: torch.Tensor, build: str) -> str:
    """What the measurement depends on, hashed: a change to any part measures again."""
    parts = [
        cpu_name(),
        str(torch.get_num_threads()),
        torch.__version__,
        build,
        repr(model),
        str(tuple(example.shape)),
        str(example.dtype),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, ms: dict[str, float]) -> None:
    data = _read_cache()
    data[key] = ms
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file(), json.dumps(data, indent=1).encode())
    except OSError:
        pass  # an unwritable cache measures again next time


def _measure(
    candidates: dict[str, nn.Module], step: Callable[[nn.Module], None]
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for net in candidates.values():  # warm-up: first calls allocate and build
        step(net)
    start = time.perf_counter()
    for round_ in range(ROUNDS):
        for name, net in candidates.items():
            t = time.perf_counter()
            for _ in range(STEPS):
                step(net)
            times[name].append((time.perf_counter() - t) / STEPS * 1e3)
        if round_ >= 1 and time.perf_counter() - start > BUDGET_S:
            break
    return {name: round(statistics.median(ms), 3) for name, ms in times.items()}


def faster(
    candidates: dict[str, nn.Module],
    model: nn.Module,
    example: torch.Tensor,
    step: Callable[[nn.Module], None],
    build: str,
) -> Choice:
    """The faster of ``candidates`` (networks over the weights of ``model``) for ``step``,
    which runs one forward and backward pass through the network it is given on a batch
    like ``example``; ``build`` names the kernels' build. Ties go to the first candidate.

    Measuring leaves ``model``'s weights, buffers (batch norm's running statistics),
    gradients, mode and torch's random state as they were.
    """
    key = choice_key(model, example, build)
    ms = _read_cache().get(key)
    cached = isinstance(ms, dict) and set(ms) == set(candidates)
    if not cached:
        state, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
        training = model.training
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        model.train()
        try:
            ms = _measure(candidates, step)
        finally:
            model.load_state_dict(state)
            torch.set_rng_state(rng)
            model.train(training)
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g
        _remember(key, ms)
    assert isinstance(ms, dict)
    best = min(candidates, key=lambda name: (ms[name], list(candidates).index(name)))
    return Choice(best, {name: float(ms[name]) for name in candidates}, cached)
