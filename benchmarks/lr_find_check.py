"""Does lr-find's suggestion lead somewhere? For each model and seed: the range test, then
5 epochs of one-cycle up to the suggested rate, against the same 5 epochs at each rate of a
6-point log grid from 0.01 to 1.0; test accuracy on the real Fashion-MNIST. Prints JSON:
per model, the mean test accuracy over the seeds of the suggestion and of each grid rate,
and how far the suggestion is from the best grid rate.

    python benchmarks/lr_find_check.py --models lenet-relu-max lenet-bn --seeds 0 1 2

The grid's runs do not depend on how the suggestion is read from the curve: ``--grid-from
FILE`` takes them from an earlier output of this benchmark (same models, seeds and epochs)
instead of training them again, and says so in its JSON (``grid_from``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from cnnlab.training import TrainConfig, train
from cnnlab.training.lr_find import lr_find

GRID = [round(10 ** (-2 + 2 * i / 5), 4) for i in range(6)]  # 0.01 ... 1.0


def accuracy(model: str, lr: float, seed: int, epochs: int, root: Path) -> float:
    config = TrainConfig(
        model=model,
        lr=lr,
        schedule="onecycle",
        epochs=epochs,
        seed=seed,
        quiet=True,
        out_dir=str(root / f"{model}-{lr:g}-{seed}"),
    )
    return float(train(config).history[-1]["test_acc"])


def earlier_grid(
    path: Path | None, models: list[str], seeds: list[int], epochs: int
) -> dict[str, dict[str, list[float]]]:
    """The grid runs of an earlier output (``--grid-from``), checked to be of the same
    models, seeds and epochs; {} without one. The output may follow the runs' log lines."""
    if path is None:
        return {}
    text = path.read_text()
    report = json.loads(text[text.index('{\n  "epochs"') :])
    if report["epochs"] != epochs or report["seeds"] != seeds:
        raise SystemExit(f"{path}: epochs {report['epochs']}, seeds {report['seeds']} differ")
    missing = [m for m in models if m not in report["models"]]
    if missing:
        raise SystemExit(f"{path} has no grid for {', '.join(missing)}")
    return {m: report["models"][m]["grid_runs"] for m in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet-relu-max", "lenet-bn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--grid-from", type=Path, help="an earlier output: reuse its grid runs")
    args = parser.parse_args()
    earlier = earlier_grid(args.grid_from, args.models, args.seeds, args.epochs)
    quiet = logging.getLogger("cnnlab")  # the runs' summary lines: this prints JSON alone
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    started, report = time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for model in args.models:
            suggested, found = [], []
            grid: dict[float, list[float]] = {lr: [] for lr in GRID}
            for seed in args.seeds:
                result = lr_find(
                    TrainConfig(model=model, seed=seed, quiet=True),
                    out_dir=root / f"lr-{model}-{seed}",
                )
                lr = float(f"{result.suggestion:.3g}") if result.suggestion else None
                found.append(lr)
                if lr is not None:
                    suggested.append(accuracy(model, lr, seed, args.epochs, root))
                for rate in GRID:
                    grid[rate].append(
                        earlier[model][f"{rate:g}"][args.seeds.index(seed)]
                        if earlier
                        else accuracy(model, rate, seed, args.epochs, root)
                    )
            means = {f"{rate:g}": round(statistics.mean(accs), 4) for rate, accs in grid.items()}
            best_rate, best = max(means.items(), key=lambda item: item[1])
            mean_suggested = round(statistics.mean(suggested), 4) if suggested else None
            report[model] = {
                "suggested_lr": found,
                "suggested_test_acc": suggested,
                "suggested_mean": mean_suggested,
                "grid_means": means,
                "grid_runs": {f"{rate:g}": accs for rate, accs in grid.items()},
                "best_grid_lr": float(best_rate),
                "best_grid_mean": best,
                "behind_best": None if mean_suggested is None else round(best - mean_suggested, 4),
            }
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "seeds": args.seeds,
                "schedule": "onecycle",
                "models": report,
                "seconds": round(time.perf_counter() - started),
                "grid_from": str(args.grid_from) if args.grid_from else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
