"""Which way of running a model's training step is faster on this machine: measured the
first time a model's shapes train here, then remembered.

The fused CPU kernels are faster than PyTorch's layers on the machines they were tuned
on; on another CPU (another instruction set, cache, core count) they may not be. So the
trainer hands :func:`faster` both networks and a function that runs one training step
(forward, loss, backward) through either: each is timed on a few steps, in turns, and the
faster is used. The answer is kept in cnnlab's cache under a key of everything that
changes it (the CPU, the thread count, torch's version, the kernels' build, the model and
the batch's shape), so the next run of the same shapes starts at once.

A busy machine times badly: a measurement taken while other programs kept a core busy, or
whose rounds' times overlap between the two paths, is kept as provisional, used for the
run that took it and measured again by the next (``--remeasure`` measures again anyway).
Two measurements in a row whose rounds overlap on an idle machine settle it: the paths are
as fast as each other here, and the earlier answer is kept for good.
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

from cnnlab.accel.cores import OtherWork
from cnnlab.fsutil import atomic_write_bytes, user_cache

ROUNDS, STEPS, BUDGET_S = 5, 2, 3.0  # rounds of STEPS steps each, in turns; time budget
BUSY_CORES = 0.25  # other programs' work during a measurement that makes it provisional


@dataclass(frozen=True)
class Choice:
    """The path taken, each candidate's median and range of milliseconds per step over the
    rounds, the cores other programs kept busy meanwhile (None where the system does not
    say), whether that makes the answer provisional, and whether the numbers come from the
    cache (measured by an earlier run)."""

    name: str
    ms: dict[str, float]
    spread: dict[str, list[float]]
    busy_cores: float | None
    provisional: bool
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


def _remember(key: str, entry: dict[str, Any]) -> None:
    data = _read_cache()
    data[key] = entry
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file(), json.dumps(data, indent=1).encode())
    except OSError:
        pass  # an unwritable cache measures again next time


def _measure(
    candidates: dict[str, nn.Module], step: Callable[[nn.Module], None]
) -> dict[str, list[float]]:
    """Each candidate's milliseconds per step in each round."""
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
    return times


def _summary(times: dict[str, list[float]], busy: float | None) -> dict[str, Any]:
    """What the cache keeps of a measurement: medians, ranges, other programs' busy cores,
    and whether it is provisional (taken on a busy machine, or the paths' ranges overlap)."""
    spread = {name: [round(min(ms), 3), round(max(ms), 3)] for name, ms in times.items()}
    lows, highs = sorted(low for low, _ in spread.values()), [high for _, high in spread.values()]
    overlap = len(spread) > 1 and min(highs) >= lows[1]
    return {
        "ms": {name: round(statistics.median(ms), 3) for name, ms in times.items()},
        "spread": spread,
        "busy_cores": None if busy is None else round(busy, 2),
        "provisional": overlap or (busy is not None and busy >= BUSY_CORES),
    }


def _well_formed(entry: Any, candidates: dict[str, nn.Module]) -> bool:
    """A cached entry of this version's form, for these candidates."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("provisional"), bool)
        and isinstance(entry.get("ms"), dict)
        and set(entry["ms"]) == set(candidates)
        and all(isinstance(v, int | float) for v in entry["ms"].values())
        and isinstance(entry.get("spread"), dict)
        and set(entry["spread"]) == set(candidates)
        and all(isinstance(v, list) and len(v) == 2 for v in entry["spread"].values())
    )


def faster(
    candidates: dict[str, nn.Module],
    model: nn.Module,
    example: torch.Tensor,
    step: Callable[[nn.Module], None],
    build: str,
    remeasure: bool = False,
) -> Choice:
    """The faster of ``candidates`` (networks over the weights of ``model``) for ``step``,
    which runs one forward and backward pass through the network it is given on a batch
    like ``example``; ``build`` names the kernels' build. Ties go to the first candidate.
    The cache's answer is used unless it is provisional or ``remeasure`` is asked; a
    provisional answer measured again on a machine still busy stands (busy runs do not
    flip between paths), a clean measurement replaces it, and one whose rounds overlap
    again on an idle machine makes it final (the paths are equally fast here: measuring
    every run would cost each run its seconds for nothing).

    Measuring leaves ``model``'s weights, buffers (batch norm's running statistics),
    gradients, mode and torch's random state as they were.
    """
    key = choice_key(model, example, build)
    entry = _read_cache().get(key)
    earlier = entry if _well_formed(entry, candidates) and not remeasure else None
    cached = earlier is not None and not earlier["provisional"]
    if not cached:
        state, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
        training = model.training
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        model.train()
        other = OtherWork()
        try:
            times = _measure(candidates, step)
        finally:
            model.load_state_dict(state)
            torch.set_rng_state(rng)
            model.train(training)
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g
        entry = _summary(times, other.cores())
        if earlier is not None and entry["provisional"]:
            busy = entry["busy_cores"]
            idle = busy is None or busy < BUSY_CORES  # only the rounds overlap, again
            entry, cached = {**earlier, "provisional": not idle}, True  # it stands
            if idle:
                _remember(key, entry)
        else:
            _remember(key, entry)
    assert isinstance(entry, dict)
    ms = {name: float(entry["ms"][name]) for name in candidates}
    best = min(candidates, key=lambda name: (ms[name], list(candidates).index(name)))
    spread = {name: [float(v) for v in entry["spread"][name]] for name in candidates}
    busy = entry.get("busy_cores")
    busy = float(busy) if isinstance(busy, int | float) else None
    return Choice(best, ms, spread, busy, bool(entry["provisional"]), cached)
