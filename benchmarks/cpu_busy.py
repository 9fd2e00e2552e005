"""The book's recipe on a busy CPU: the careful plain PyTorch loop and ``cnnlab.train``,
idle and beside 1 and 2 competing CPU-bound processes, in turns.

A learner's laptop is rarely idle: a browser, an editor, another notebook. This starts
other processes that each keep one core busy (a loop of float arithmetic in Python,
started and ended here), then trains ``--epochs`` (2) epochs of each variant beside them;
loads and variants alternate over ``--repeats`` rounds, so a drift of the machine's speed
reaches every cell alike. For cnnlab it records the CPU path the run took (config.json's
``cpu_path``: fused kernels or PyTorch's layers, measured or cached, provisional or not)
and the threads it started with (it then follows the free cores). Prints one JSON object:
per load, the median training examples/sec of each variant, their shares of their idle
rates and cnnlab's ratio to the plain loop under the same load.

    python benchmarks/cpu_busy.py
    python benchmarks/cpu_busy.py --repeats 3 --loads 0 1 2 --isa avx2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from cpu_speed import fashion_mnist, run_cnnlab, run_plain
from isa import TORCH_LEVELS, use_isa

SPIN = "x = 1.0\nwhile True:\n    x = x * 1.0000001 + 1e-9\n"


def competitors(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="rounds over loads and variants")
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--isa", choices=list(TORCH_LEVELS), default="native")
    args = parser.parse_args()
    use_isa(args.isa)
    logging.getLogger("cnnlab").setLevel(logging.WARNING)
    data = fashion_mnist(args.data_dir)
    threads = torch.get_num_threads()
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        load: {"plain": [], "cnnlab": []} for load in args.loads
    }
    for _ in range(args.repeats):
        for load in args.loads:
            others = competitors(load)
            time.sleep(0.5)  # let them start
            try:
                runs[load]["plain"].append(run_plain(data, args.epochs, args.seed))
                torch.set_num_threads(threads)  # as the plain loop found it
                runs[load]["cnnlab"].append(
                    run_cnnlab(args.epochs, args.seed, args.data_dir, fast=None)
                )
                runs[load]["cnnlab"][-1]["loadavg_1min"] = os.getloadavg()[0]
            finally:
                for process in others:
                    process.kill()
                    process.wait()
            time.sleep(1.0)
    results: dict[str, Any] = {}
    for load, variants in runs.items():
        medians = {
            name: statistics.median(row["examples_per_sec_train"] for row in rows)
            for name, rows in variants.items()
        }
        results[f"competitors_{load}"] = {
            "plain_examples_per_sec": medians["plain"],
            "cnnlab_examples_per_sec": medians["cnnlab"],
            "cnnlab_over_plain": round(medians["cnnlab"] / medians["plain"], 2),
            "runs": variants,
        }
    if 0 in runs:
        idle = results["competitors_0"]
        for row in results.values():
            row["cnnlab_share_of_idle"] = round(
                row["cnnlab_examples_per_sec"] / idle["cnnlab_examples_per_sec"], 2
            )
            row["plain_share_of_idle"] = round(
                row["plain_examples_per_sec"] / idle["plain_examples_per_sec"], 2
            )
    report = {
        "benchmark": "cpu_busy",
        "isa": args.isa,
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "epochs": args.epochs,
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
