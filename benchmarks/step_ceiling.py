"""How far one CPU training step of a recipe can go: its parts measured, and the step if
every multiply-add ran at this machine's FMA peak.

For ``--recipe book`` (LeNet) or ``--recipe best``: the training step with the model's own
layers (``--no-fast``; for the book's recipe the step of cpu_speed.py's plain loop) and
fused as cnnlab trains it, alternating, on the first 50 batches of the real training set in
turn. Each of 7 rounds also profiles 10 fused steps: the self time of its convolutions
(the fused blocks' kernels or oneDNN's convolutions, forward and backward), linear layers
and batch norm blocks; the rest (loss, optimizer, elementwise ops, autograd and Python) is
the step less those. Each round also trains one epoch with ``cnnlab.train`` on the fused
path: ``loop_ms``, its time per batch, is the step with the loop's own work added (the
batch's gather, the recipe's augmentation, the epoch's sums, the checks). All medians over
the rounds.

The multiply-adds of the convolutions and linear layers (forward, weight gradient and
input gradient; none for the first layer's input) give the step's share of the peak
(``step_of_peak``) and ``at_peak_ms``: the step with them at the peak and the rest as
measured. ``ceiling`` is the eager step over that: the most the fused path can gain
without also cutting the rest. For each speed-up in ``--targets``, ``needed_of_peak`` is
the share of the peak the multiply-add parts would need for it (above 1, or null where the
rest alone is slower than the target step: out of reach unless the rest shrinks). An
epoch adds the same data handling to both paths, so its ratio is below the step's. Prints
one JSON object. ``--isa`` as for cpu_kernels.py.

    python benchmarks/step_ceiling.py --recipe book --targets 3.5 3.0
    python benchmarks/step_ceiling.py --recipe book --isa avx2 --targets 3.0
    python benchmarks/step_ceiling.py --recipe best --targets 2.5
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F
from cpu_kernels import machine
from cpu_speed import fashion_mnist
from isa import use_isa
from torch import nn

from cnnlab import TrainConfig, train
from cnnlab.accel.cpu import ISAS, fuse_layers, isa
from cnnlab.models import parse_options, pool_before_activation, summarize
from cnnlab.training.optim import make_optimizer
from cnnlab.training.parts import build_model

PARTS = {  # the profiler's names for each part's ops, fused and eager
    "convolutions": (
        "BlockFunction",
        "BlockFunctionBackward",
        "aten::mkldnn_convolution",
        "aten::convolution_backward",
    ),
    "linear": ("LinearFunction", "LinearFunctionBackward", "aten::addmm", "aten::mm"),
    "norm": (
        "NormFunction",
        "NormFunctionBackward",
        "aten::native_batch_norm",
        "aten::native_batch_norm_backward",
    ),
}
ARITHMETIC = ("convolutions", "linear")  # the parts counted in multiply-adds


def multiply_adds(model: nn.Module, batch: int) -> dict[str, int]:
    """The multiply-adds of a training step's convolutions and linear layers on ``batch``
    images, from the summary's per-image counts: forward, weight gradient and input
    gradient (none for the first layer, whose input is data)."""
    counts = dict.fromkeys(ARITHMETIC, 0)
    rows = [row for row in summarize(model, (1, 28, 28)) if row.macs]
    for i, row in enumerate(rows):
        kind = "convolutions" if row.window else "linear"  # a convolution has a window
        counts[kind] += batch * row.macs * (3 if i else 2)
    return counts


def first_batches(data: dict[str, torch.Tensor], batch: int) -> list[Any]:
    """The first 50 batches of the real training set, channels-last."""
    return [
        (x.contiguous(memory_format=torch.channels_last), y)
        for x, y in zip(
            data["x_train"].split(batch)[:50], data["y_train"].split(batch)[:50], strict=True
        )
    ]


def step_of(
    net: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, batches: list[Any]
) -> Any:
    """One training step on the next of ``batches``, in turn."""
    turn = itertools.count()

    def step() -> None:
        x, y = batches[next(turn) % len(batches)]
        loss = F.cross_entropy(net(x), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    return step


def measure(recipe: str, targets: list[float], data_dir: str | None) -> dict[str, Any]:
    torch.set_flush_denormal(True)
    peak = machine()[f"peak_gflops_{torch.get_num_threads()}_threads"]
    config = TrainConfig.from_dict({"recipe": recipe})
    options = {
        **parse_options(config.model, config.model_options),
        "num_classes": 10,
        "in_channels": 1,
        "image_size": (28, 28),
        "backend": config.backend,
    }
    model = build_model(config, options, (1, 28, 28), torch.device("cpu"))
    macs = multiply_adds(model, config.batch_size)
    optimizer = make_optimizer(
        model, config.optimizer, config.lr, config.weight_decay, config.momentum
    )
    batches = first_batches(fashion_mnist(data_dir), config.batch_size)
    steps = {
        "eager": step_of(pool_before_activation(model), optimizer, config, batches),
        "fused": step_of(pool_before_activation(fuse_layers(model)), optimizer, config, batches),
    }
    model.train()
    times: dict[str, list[float]] = {name: [] for name in (*steps, *PARTS, "loop")}
    for seed in range(7):  # in turns, so that the machine's drift reaches all alike
        for name, step in steps.items():
            for _ in range(3):
                step()
            start = time.perf_counter()
            for _ in range(20):
                step()
            times[name].append((time.perf_counter() - start) / 20 * 1e3)
        with torch.profiler.profile() as profile:
            for _ in range(10):
                steps["fused"]()
        self_us = collections.Counter[str]()
        for event in profile.key_averages():
            self_us[event.key] += event.self_cpu_time_total
        for part, keys in PARTS.items():
            times[part].append(sum(self_us[key] for key in keys) / 10 / 1e3)
        with tempfile.TemporaryDirectory() as tmp:
            run = {"recipe": recipe, "epochs": 1, "fast": True, "quiet": True, "seed": seed}
            result = train(
                TrainConfig.from_dict({**run, "out_dir": f"{tmp}/run", "data_dir": data_dir})
            )
        times["loop"].append(config.batch_size / result.examples_per_sec * 1e3)
    ms = {name: statistics.median(values) for name, values in times.items()}
    parts = {part: ms[part] for part in PARTS}
    parts["rest"] = ms["fused"] - sum(parts.values())
    at_peak = {part: 2 * macs[part] / peak / 1e6 for part in ARITHMETIC}
    rest = ms["fused"] - sum(parts[part] for part in ARITHMETIC)  # batch norm included
    all_at_peak = sum(at_peak.values())
    return {
        "recipe": recipe,
        "batch": config.batch_size,
        "eager_ms": round(ms["eager"], 3),
        "fused_ms": round(ms["fused"], 3),
        "speedup": round(ms["eager"] / ms["fused"], 2),
        "loop_ms": round(ms["loop"], 3),
        "mflop_per_example": round(2 * sum(macs.values()) / config.batch_size / 1e6, 3),
        "step_of_peak": round(all_at_peak / ms["fused"], 3),
        "parts": {
            part: {
                "ms": round(value, 3),
                **(
                    {
                        "at_peak_ms": round(at_peak[part], 3),
                        "of_peak": round(at_peak[part] / value, 2),
                    }
                    if part in ARITHMETIC and value > 0
                    else {}
                ),
            }
            for part, value in parts.items()
        },
        "at_peak_ms": round(all_at_peak + rest, 3),
        "ceiling": round(ms["eager"] / (all_at_peak + rest), 2),
        "needed_of_peak": {
            f"{target:g}x": round(all_at_peak / (ms["eager"] / target - rest), 2)
            if ms["eager"] / target > rest
            else None  # the rest alone is slower than the target step
            for target in targets
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("book", "best"), default="book")
    parser.add_argument("--isa", choices=list(ISAS), default="native")
    parser.add_argument("--targets", type=float, nargs="*", default=[], metavar="RATIO")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    use_isa(args.isa)
    logging.getLogger("cnnlab").setLevel(logging.WARNING)  # only the JSON on stdout
    report = {
        "benchmark": "step_ceiling",
        "isa": isa(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **measure(args.recipe, args.targets, args.data_dir),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
