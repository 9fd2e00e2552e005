"""Several processes through PyTorch's own torchrun: gloo on CPU, nccl on CUDA.

``cnnlab train --nproc N`` starts torchrun for you; ``torchrun --nproc-per-node N -m cnnlab
train ...`` works the same. Every rank sees the same shuffled order (a function of seed
and epoch) and takes every world-th example of each global batch, so the global batch is
the one the user set; rank 0 alone prints and writes files.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def restarted(self) -> bool:
        """True in a worker that torchrun restarted after a failure."""
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def setup(device_type: str) -> World:
    """Join the process group torchrun describes in the environment (if any)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        # torchrun keeps one key-value store across worker restarts; without a prefix per
        # restart, restarted gloo workers read their dead predecessors' addresses and hang.
        store, rank, size = next(iter(dist.rendezvous("env://")))  # type: ignore[attr-defined]
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo",
            store=dist.PrefixStore(f"cnnlab-restart-{restart}", store),  # type: ignore[attr-defined]
            rank=rank,
            world_size=size,
        )
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def data_parallel(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``model`` as the world trains it: wrapped in DistributedDataParallel under torchrun
    (it averages the gradients over the ranks), else itself."""
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(world: World, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Copies of ``tensors`` summed over all ranks (the tensors themselves are unchanged)."""
    out = [t.clone() for t in tensors]
    if world.distributed:
        for t in out:
            dist.all_reduce(t)
    return out


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (every rank must call this together)."""
    if not world.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item())


def broadcast_text(world: World, text: str) -> str:
    """Rank 0's ``text`` on every rank."""
    if not world.distributed:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(train_args: Sequence[str], nproc: int, max_restarts: int) -> int:
    """Run ``cnnlab train train_args`` in ``nproc`` processes under torchrun; its exit code."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        str(max_restarts),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "-m",
        "cnnlab",
        "train",
        *train_args,
    ]
    return subprocess.call(command)
