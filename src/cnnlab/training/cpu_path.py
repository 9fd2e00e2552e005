"""Which network a run trains through on a CPU: the model's own layers, or its blocks as
cnnlab's fused kernels (accel.cpu), forced by --fast/--no-fast or chosen by timing a few
steps of each (accel.choice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.accel.choice import BUSY_CORES, faster
from cnnlab.accel.cpu import build, fuse_layers
from cnnlab.data import Batches
from cnnlab.device import autocast
from cnnlab.errors import CheckpointError
from cnnlab.logs import log
from cnnlab.models import pool_before_activation
from cnnlab.rundir import read_config
from cnnlab.training.distributed import World, broadcast_text


def choose_forward(
    model: nn.Module,
    batches: Batches,
    world: World,
    run_dir: Path,
    precision: str,
    fast: bool | None = None,
    quiet: bool = False,
    remeasure: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """What runs ``model``'s forward (max pooling before the activation), and which CPU
    path that is and why (config.json's ``cpu_path``; empty off the CPU): its layers, or
    its blocks fused where ``fast`` (--fast) forces them or, by default (None), where a
    few timed steps on the first batch of ``batches`` find them faster (timed again where
    the remembered answer was provisional, or with ``remeasure``). A resumed run keeps
    its path."""
    eager = pool_before_activation(model)
    device = next(model.parameters()).device
    if fast is False or device.type != "cpu":
        return eager, {}  # --no-fast: the kernels are not even built
    fused = fuse_layers(model)
    if fused is model:
        return eager, {}
    nets = {"fused": pool_before_activation(fused), "eager": eager}
    if fast:
        return nets["fused"], {"path": "fused", "why": "--fast"}
    earlier = earlier_path(run_dir)
    if earlier is not None:  # a resumed run keeps its path: the same bits as unbroken
        return nets[earlier], {"path": earlier, "why": "this run's earlier choice"}
    x, y = batches.gather(torch.arange(min(batches.batch_size, batches.num_examples)))

    def step(net: nn.Module) -> None:
        with autocast(device, precision):
            loss = F.cross_entropy(net(x), y, reduction="sum")
        loss.backward()  # type: ignore[no-untyped-call]

    choice = faster(nets, model, x, step, build(), remeasure) if world.is_main else None
    name = broadcast_text(world, choice.name if choice else "")
    if choice is None:
        return nets[name], {}
    if not quiet:
        log.info(
            "fused CPU kernels: %.1f ms per step against %.1f ms for the eager layers "
            "(%s); training runs the %s",
            choice.ms["fused"],
            choice.ms["eager"],
            "measured on this machine before" if choice.cached else "measured now",
            "fused kernels" if name == "fused" else "eager layers",
        )
        if choice.provisional:
            log.info("%s", provisional_note(choice.busy_cores))
    return nets[name], {
        "path": name,
        "why": "measured",
        "ms_per_step": choice.ms,
        "spread_ms": choice.spread,
        "busy_cores": choice.busy_cores,
        "provisional": choice.provisional,
        "measured_before": choice.cached,
        "kernels": build(),
    }


def provisional_note(busy_cores: float | None) -> str:
    """Why a measured choice is provisional, and what happens to it."""
    why = (
        f"other programs kept {busy_cores:.1f} cores busy meanwhile"
        if busy_cores is not None and busy_cores >= BUSY_CORES
        else "the two paths' times overlapped"
    )
    return f"the choice is provisional: {why}; the next run measures again"


def earlier_path(run_dir: Path) -> str | None:
    """The CPU path this run directory's config.json says the run trained with, if it
    was measured (a resumed run), else None."""
    try:
        chosen = read_config(run_dir).get("environment", {}).get("cpu_path", {})
    except CheckpointError:  # a new run: no config.json yet
        return None
    path = chosen.get("path") if isinstance(chosen, dict) else None
    return path if path in ("fused", "eager") else None
