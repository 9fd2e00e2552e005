"""A recipe's training speed on a CPU with the fused blocks (cnnlab's default) against the
eager layers (``--no-fast``), in one process, in turns.

For ``--recipe best`` the fused path is its batch norm -> ReLU -> max pool blocks in one
kernel each (cnnlab.accel.cpu.FusedNorm); ``--no-fast`` runs the layers as cnnlab did before
that kernel. Each of ``--seeds`` trains ``--repeats`` times per variant, alternating; the
per-epoch training seconds (time in training batches, evaluation apart) and the whole run's
wall time are medians over every run of a variant, and the ratios compare them. The test
accuracy is each seed's last epoch, averaged over seeds. Prints one JSON object.

    python benchmarks/recipe_speed.py --recipe best --epochs 2 --repeats 3
    python benchmarks/recipe_speed.py --recipe best --seeds 0 1 2   # the full 16 epochs
    python benchmarks/recipe_speed.py --recipe best --epochs 2 --repeats 2 --isa avx2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from isa import TORCH_LEVELS, use_isa

from cnnlab import TrainConfig, train


def run(
    recipe: str, epochs: int | None, seed: int, fast: bool, data_dir: str | None
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "recipe": recipe,
        "seed": seed,
        "fast": fast,
        "quiet": True,
        "data_dir": data_dir,
    }
    if epochs:
        options["epochs"] = epochs
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(TrainConfig.from_dict({**options, "out_dir": str(Path(tmp) / "run")}))
        wall = time.perf_counter() - start
    return {
        "epoch_seconds": [round(row["train_seconds"], 3) for row in result.history],
        "wall_seconds": round(wall, 2),
        "test_acc": result.final["test_acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="best")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--isa",
        choices=list(TORCH_LEVELS),
        default="native",
        help="the instruction set of the kernels and of PyTorch's own",
    )
    args = parser.parse_args()
    use_isa(args.isa)
    logging.getLogger("cnnlab").setLevel(logging.WARNING)
    runs: dict[str, list[dict[str, Any]]] = {"fused": [], "eager": []}
    accuracy: dict[str, dict[int, float]] = {"fused": {}, "eager": {}}
    for seed in args.seeds:
        for _ in range(args.repeats):
            for name in ("fused", "eager"):
                row = run(args.recipe, args.epochs, seed, name == "fused", args.data_dir)
                runs[name].append({"seed": seed, **row})
                accuracy[name][seed] = row["test_acc"]
    summary: dict[str, Any] = {}
    for name, rows in runs.items():
        summary[name] = {
            "median_epoch_seconds": round(
                statistics.median(s for r in rows for s in r["epoch_seconds"]), 3
            ),
            "median_wall_seconds": round(statistics.median(r["wall_seconds"] for r in rows), 2),
            "mean_test_acc": round(statistics.mean(accuracy[name].values()), 4),
            "test_acc_by_seed": accuracy[name],
        }
    fused, eager = summary["fused"], summary["eager"]
    print(
        json.dumps(
            {
                "benchmark": "recipe_speed",
                "isa": args.isa,
                "recipe": args.recipe,
                "epochs": args.epochs,
                "seeds": args.seeds,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "summary": summary,
                "epoch_ratio_fused_over_eager": round(
                    eager["median_epoch_seconds"] / fused["median_epoch_seconds"], 2
                ),
                "wall_ratio_fused_over_eager": round(
                    eager["median_wall_seconds"] / fused["median_wall_seconds"], 2
                ),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
