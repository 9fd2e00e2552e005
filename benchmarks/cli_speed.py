"""How long the commands that need no network take to answer, from a new process each time
(the user's wait, Python's start-up included): `cnnlab --help`, every command's `--help`,
`cnnlab shape` and `cnnlab data status`. Prints JSON: the median and the runs in seconds,
and whether the command loaded torch (it should not).

    python benchmarks/cli_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "shape": ["shape", "--input", "8x8", "--kernel", "3"],
    "data status": ["data", "status"],
    "train --help": ["train", "--help"],
    "viz --help": ["viz", "--help"],
    "summary --help": ["summary", "--help"],
}


def run(words: list[str]) -> tuple[float, bool]:
    """Seconds to answer, and whether torch was imported."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnlab", *words],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    return seconds, any(re.search(r"\|\s*torch$", line) for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (default: 5)")
    args = parser.parse_args()
    results = {}
    for name, words in COMMANDS.items():
        runs = [run(words) for _ in range(args.repeats)]
        seconds = [s for s, _ in runs]
        results[name] = {
            "median_s": round(statistics.median(seconds), 3),
            "runs_s": [round(s, 3) for s in seconds],
            "imports_torch": any(t for _, t in runs),
        }
    print(json.dumps({"python": sys.version.split()[0], "commands": results}, indent=2))


if __name__ == "__main__":
    main()
