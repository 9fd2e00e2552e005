"""Many runs, one table: ``cnnlab sweep FILE.toml``.

The file names the runs, as a list, a grid, or both::

    [base]                    # TrainConfig fields every run shares
    epochs = 10

    [[run]]                   # one run: a name and its own fields
    name = "max pooling"
    model = "lenet-max"

    [grid]                    # every combination of these values is one more run
    lr = [0.9, 0.3]
    model = ["lenet", "lenet-relu"]

Each run is an ordinary ``cnnlab train`` process with its own run directory under the
sweep's directory, which ends with ``sweep.md``, ``sweep.csv`` (run, model, parameters,
epochs, wall time, train and test accuracy) and ``sweep.png`` (every run's curves).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.rundir import check_run_dir, load_model, read_metrics
from cnnlab.training import TrainConfig
from cnnlab.training.config import load_toml

COLUMNS = ("run", "model", "parameters", "epochs", "wall_seconds", "train_acc", "test_acc")


@dataclass
class SweepRun:
    name: str
    config: TrainConfig


def load_sweep(path: Path) -> list[SweepRun]:
    """The runs that ``path`` describes, each config checked before anything runs."""
    data = load_toml(path, "sweep file")
    unknown = sorted(set(data) - {"base", "run", "grid"})
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; use [base], [[run]] and [grid]")
    base, runs_, grid = data.get("base", {}), data.get("run", []), data.get("grid", {})
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise ConfigError(f"{path}: [base] and [grid] must be tables of keys")
    if not isinstance(runs_, list) or not all(isinstance(e, dict) for e in runs_):
        raise ConfigError(f"{path}: runs must be [[run]] tables")
    named = []
    for i, entry in enumerate(runs_, start=1):
        entry = dict(entry)
        named.append((str(entry.pop("name", f"run {i}")), entry))
    if any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"{path}: every [grid] entry must be a non-empty list of values")
    for values in itertools.product(*grid.values()) if grid else []:
        entry = dict(zip(grid, values, strict=True))
        named.append((" ".join(f"{k}={v}" for k, v in entry.items()), entry))
    if not named:
        raise ConfigError(f"{path}: no runs; add [[run]] tables or a [grid]")
    runs = []
    for name, entry in named:
        if "resume" in {**base, **entry}:
            raise ConfigError(f"{path}: run {name!r}: a sweep starts new runs; resume is not "
                              "a key it can set (resume a run with cnnlab train --resume)")
        try:
            runs.append(SweepRun(name, TrainConfig.from_dict({**base, **entry})))
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{path}: run {name!r}: {e}") from None
    if len({_slug(r.name) for r in runs}) < len(runs):
        raise ConfigError(f"{path}: two runs have the same name")
    return runs


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def run_sweep(runs: Sequence[SweepRun], out_dir: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Train every run (``jobs`` at a time), then write the table and the figure."""
    if jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs}")
    check_run_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if jobs > 1:  # share the cores instead of each process taking them all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    def one(run: SweepRun) -> dict[str, Any]:
        run_dir = out_dir / _slug(run.name)
        flags = run.config.to_flags(("out_dir", "quiet"))
        command = [sys.executable, "-m", "cnnlab", "train", *flags,
                   "--out-dir", str(run_dir), "--quiet"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            return {"run": run.name, "model": run.config.model, "error": reason}
        return _row(run, run_dir, wall)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, runs))
    write_outputs(out_dir, runs, rows)
    return rows


def _row(run: SweepRun, run_dir: Path, wall: float) -> dict[str, Any]:
    model, meta = load_model(run_dir)
    final = meta["final"]
    return {
        "run": run.name, "model": run.config.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": run.config.epochs, "wall_seconds": round(wall, 1),
        "train_acc": round(final["train_acc"], 4), "test_acc": round(final["test_acc"], 4),
    }  # fmt: skip


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['run']} | {row['model']} | failed: {row['error']} |")
            continue
        cells = [f"{row[c]:,}" if c == "parameters" else str(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, runs: Sequence[SweepRun], rows: Sequence[dict[str, Any]]) -> None:
    from cnnlab.viz import figure_bytes, plot_run_comparison

    atomic_write_bytes(out_dir / "sweep.md", markdown_table(rows).encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, "error"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "sweep.csv", buffer.getvalue().encode())
    histories = {}
    for run, row in zip(runs, rows, strict=True):
        if "error" not in row:
            histories[run.name] = read_metrics(out_dir / _slug(run.name))[1]
    if histories:
        atomic_write_bytes(out_dir / "sweep.png", figure_bytes(plot_run_comparison(histories)))


def sweep(path: Path, out_dir: Path | None = None, jobs: int = 1) -> list[dict[str, Any]]:
    """Load ``path`` and run it into ``out_dir`` (default ``runs/sweep-<file>-<time>``)."""
    runs = load_sweep(path)
    out_dir = out_dir or Path("runs") / f"sweep-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = run_sweep(runs, out_dir, jobs)
    if all("error" in r for r in rows):
        raise CnnlabError(f"every run of the sweep failed; see {out_dir / 'sweep.md'}")
    return rows
