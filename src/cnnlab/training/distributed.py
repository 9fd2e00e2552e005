"""Several processes through PyTorch's own torchrun: gloo on CPU, nccl on CUDA.

``cnnlab train --nproc N`` starts torchrun for you; ``torchrun --nproc-per-node N -m cnnlab
train ...`` works the same. Every rank sees the same shuffled order (a function of seed
and epoch) and takes every world-th example of each global batch, so the global batch is
the one the user set; rank 0 alone prints and writes files.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from cnnlab import environ
from cnnlab.fsutil import quote


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
        return environ.torchrun()[2] > 0


def setup(device_type: str) -> World:
    """Join the process group torchrun describes in the environment (if any)."""
    size, local_rank, restart = environ.torchrun()
    if size <= 1:
        return World()
    if not dist.is_initialized():
        # torchrun keeps one key-value store across worker restarts; without a prefix per
        # restart, restarted gloo workers read their dead predecessors' addresses and hang.
        store, rank, size = next(iter(dist.rendezvous("env://")))  # type: ignore[attr-defined]
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo",
            store=dist.PrefixStore(f"cnnlab-restart-{restart}", store),  # type: ignore[attr-defined]
            rank=rank,
            world_size=size,
        )
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


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


def launch(
    train_args: Sequence[str], nproc: int, max_restarts: int, run_dir: Path
) -> tuple[int, str]:
    """Run ``cnnlab train train_args`` in ``nproc`` processes under torchrun; its exit code,
    and for a failure what went wrong in one line.

    The workers' stdout (the epoch lines) passes through; their stderr and torchrun's own
    logs are kept aside, so that a run whose workers fail ends in one line (the workers'
    own error, or which one died and how) with the command that resumes it, instead of
    pages of gloo and torchrun tracebacks.
    """
    logs = Path(tempfile.mkdtemp(prefix="cnnlab-torchrun-"))
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
        "--log-dir",
        str(logs),
        "--redirects",
        "2",  # each worker's stderr into LOGS/.../attempt_N/RANK/stderr.log
        "-m",
        "cnnlab",
        "train",
        *train_args,
    ]
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True, errors="replace")
    attempts = sorted(logs.glob("*/attempt_*"), key=lambda a: int(a.name.split("_")[1]))
    if len(attempts) > 1:
        print(
            f"a training process failed ({_death(done.stderr)}); torchrun restarted the "
            f"workers {len(attempts) - 1} time(s) and the run resumed from its checkpoint",
            file=sys.stderr,
        )
    said = _workers_said(attempts[-1]) if attempts else []
    if done.returncode == 0:
        for line in said:  # rank 0's warnings, as a one-process run prints them
            print(line, file=sys.stderr)
        shutil.rmtree(logs, ignore_errors=True)
        return 0, ""
    errors = [line for line in said if line.startswith(("error: ", "SIG"))]
    if errors:
        return done.returncode, errors[-1].removeprefix("error: ")
    return done.returncode or 1, (
        f"a training process died ({_death(done.stderr)}) before the run finished; its last "
        f"checkpoint is whole. Resume with: cnnlab train --resume {quote(run_dir)} --nproc "
        f"{nproc} (the workers' logs: {logs})"
    )


def _workers_said(attempt: Path) -> list[str]:
    """The lines the workers of one attempt wrote to stderr, rank 0's first (the others'
    errors only), with tracebacks and gloo's noise left out."""
    lines: list[str] = []
    for log in sorted(attempt.glob("*/stderr.log"), key=lambda p: int(p.parent.name)):
        text = log.read_text(errors="replace").splitlines()
        keep = [t for t in text if not t.startswith((" ", "Traceback", "[W", "[E", "[I"))]
        lines += keep if log.parent.name == "0" else [t for t in keep if t.startswith("error")]
    return [line for line in lines if line.strip()]


def _death(torchrun_said: str) -> str:
    """How a worker ended, from torchrun's summary (``exitcode: -9``: killed by SIGKILL)."""
    found = re.search(r"exitcode\s*:\s*(-?\d+)", torchrun_said)
    if found is None:
        return "it exited"
    code = int(found.group(1))
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"exitcode {code}: killed by {signal.Signals(-code).name}"
    return f"exitcode {code}"
