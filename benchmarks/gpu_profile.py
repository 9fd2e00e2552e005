"""Where a training step's time goes on a CUDA GPU: the book's LeNet step, eager and
replayed from cnnlab's CUDA graph, timed back to back (GPU time by CUDA events, host time
by the wall clock) and broken down by kernel with torch.profiler.

    python benchmarks/gpu_profile.py --data-dir DIR     # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.device import resolve_device
from cnnlab.training import TrainConfig
from cnnlab.training.distributed import World
from cnnlab.training.parts import build_parts
from cnnlab.training.run import Run
from cnnlab.training.trainer import capture_graphs


def timed(step: Callable[[], object], steps: int) -> dict[str, float]:
    """Microseconds per step: GPU (events around the whole run) and host wall clock."""
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    begin.record()
    for _ in range(steps):
        step()
    end.record()
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {
        "us_per_step_wall": round(wall / steps * 1e6, 1),
        "us_per_step_host_launch": round(host / steps * 1e6, 1),
        "us_per_step_gpu": round(begin.elapsed_time(end) / steps * 1e3, 1),
    }


def kernels(step: Callable[[], object], steps: int, top: int) -> list[dict[str, Any]]:
    """The kernels that take the most GPU time over ``steps`` steps, per step."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    rows = [e for e in events if e.device_time_total > 0 and str(e.device_type).endswith("CUDA")]
    rows.sort(key=lambda e: e.device_time_total, reverse=True)
    return [
        {
            "kernel": e.key[:90],
            "us_per_step": round(e.device_time_total / steps, 2),
            "calls_per_step": round(e.count / steps, 2),
        }
        for e in rows[:top]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="as cnnlab train --compile")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_profile.py needs a CUDA device")
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            device="cuda", data_dir=args.data_dir, quiet=True, compile=args.compile
        )
        device = resolve_device(config.device)
        run = Run(config, build_parts(config, device), Path(tmp), World())
        assert run.graph_lengths, "the book's recipe on CUDA is graphed"
        capture_graphs(run)
        index = next(run.train_batches.indices(0))
        graphed = lambda: run.graphs[config.batch_size](index)  # noqa: E731
        eager = lambda: run.step(index, config.batch_size)  # noqa: E731
        for step in (graphed, eager):  # warm up both
            timed(step, 10)
        report = {
            "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "batch": config.batch_size,
            "capture_seconds": round(run.capture_seconds, 3),
            "graphed": timed(graphed, args.steps),
            "eager": timed(eager, args.steps),
            "graphed_kernels": kernels(graphed, 20, args.top),
            "eager_kernels": kernels(eager, 20, args.top),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
