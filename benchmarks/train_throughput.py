"""The book's recipe through cnnlab.train, timed end to end; prints one JSON object.

python benchmarks/train_throughput.py --epochs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from cnnlab import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    logging.getLogger("cnnlab").setLevel(logging.WARNING)  # only the JSON on stdout

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(
            TrainConfig(
                epochs=args.epochs,
                seed=args.seed,
                device=args.device,
                data_dir=args.data_dir,
                out_dir=str(Path(tmp) / "run"),
                quiet=True,
            )
        )
        wall = time.perf_counter() - start
    final = result.final
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "recipe": "book (lenet, fashion-mnist, batch 256, sgd lr 0.9)",
                "epochs": args.epochs,
                "seed": args.seed,
                "device": result.device,
                "threads": torch.get_num_threads(),
                "examples_per_sec": round(result.examples_per_sec, 1),
                "wall_seconds": round(wall, 2),
                "final_train_loss": round(final["train_loss"], 4),
                "final_train_acc": round(final["train_acc"], 4),
                "final_test_acc": round(final["test_acc"], 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
