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
epochs, wall time, train and test accuracy) and ``sweep.png`` (every run's curves, with
the accuracy the table says to choose by: validation where the runs hold some out). A
line on stderr reports each variant as it ends. Ctrl-C (or SIGTERM) stops launching variants, stops
the running ones as ``cnnlab train`` stops (a checkpoint to resume from) and writes the
table of what finished. A file of more than ``MAX_VARIANTS`` variants is refused unless
``max_variants`` allows it (counted without listing them).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import environ
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.fsutil import atomic_write_bytes, load_toml
from cnnlab.rundir import check_run_dir, load_model, read_metrics
from cnnlab.training import TrainConfig
from cnnlab.training.control import Interrupted, StopOnSignal

COLUMNS = ("run", "model", "parameters", "epochs", "wall_seconds", "train_acc", "test_acc")
MAX_VARIANTS = 200  # more must be asked for: 200 runs of the book's recipe take hours


@dataclass
class SweepRun:
    name: str
    config: TrainConfig


def load_sweep(path: Path, max_variants: int = MAX_VARIANTS) -> list[SweepRun]:
    """The runs that ``path`` describes, each config checked before anything runs; more
    than ``max_variants`` of them is an error."""
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
    count = len(runs_) + (math.prod(len(v) for v in grid.values()) if grid else 0)
    if count > max_variants:
        sizes = " x ".join(str(len(v)) for v in grid.values()) or "0"
        raise ConfigError(
            f"{path}: {count:,} variants ({len(runs_)} [[run]] tables and a grid of "
            f"{sizes}) is more than {max_variants}; shrink the grid, or pass --max-variants "
            f"{count} to run them all"
        )
    for values in itertools.product(*grid.values()) if grid else []:
        entry = dict(zip(grid, values, strict=True))
        named.append((" ".join(f"{k}={v}" for k, v in entry.items()), entry))
    if not named:
        raise ConfigError(f"{path}: no runs; add [[run]] tables or a [grid]")
    runs = []
    for name, entry in named:
        if "resume" in {**base, **entry}:
            raise ConfigError(
                f"{path}: run {name!r}: a sweep starts new runs; resume is not "
                "a key it can set (resume a run with cnnlab train --resume)"
            )
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
    """Train every run (``jobs`` at a time), then write the table and the figure; stopped by
    a signal (see the module's docstring), raise :class:`Interrupted` after writing them."""
    if jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs}")
    check_run_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environ.for_child()
    if jobs > 1:  # share the cores instead of each process taking them all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    ended, lock = [0], threading.Lock()

    def one(run: SweepRun, signals: _Signals) -> dict[str, Any]:
        if signals.received:
            return {"run": run.name, "model": run.config.model, "error": "not run (stopped)"}
        run_dir = out_dir / _slug(run.name)
        flags = run.config.to_flags(("out_dir", "quiet"))
        command = [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            *flags,
            "--out-dir",
            str(run_dir),
            "--quiet",
        ]
        start = time.perf_counter()
        stderr = signals.run(command, env)
        wall = time.perf_counter() - start
        with lock:
            ended[0] += 1
            count = ended[0]
        if stderr is not None:
            reason = (stderr.strip().splitlines() or ["no message"])[-1]
            progress(f"[{count}/{len(runs)}] {run.name}: failed: {reason}")
            return {"run": run.name, "model": run.config.model, "error": reason}
        row = _row(run, run_dir, wall)
        acc = row["test_acc"]
        progress(f"[{count}/{len(runs)}] {run.name}: test acc {acc:.4f} in {wall:.0f} s")
        return row

    with _Signals() as signals, ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(lambda run: one(run, signals), runs))
    write_outputs(out_dir, runs, rows)
    if signals.received:
        finished = sum("error" not in r for r in rows)
        name = signal.Signals(signals.received[0]).name
        raise Interrupted(
            f"{name}: the sweep stopped with {finished} of {len(runs)} variants finished; a "
            f"stopped one resumes with cnnlab train --resume ITS_DIR; the table of what "
            f"finished is in {out_dir / 'sweep.md'}",
            signals.received[0],
        )
    return rows


def progress(line: str) -> None:
    """A variant has ended: one line on stderr (stdout is the table's)."""
    print(line, file=sys.stderr, flush=True)


class _Signals(StopOnSignal):
    """SIGINT, SIGTERM and SIGHUP while a sweep runs: recorded (no more variants start)
    and passed on, one for one, to the running variants. They run in sessions of their
    own, so a Ctrl-C at the terminal reaches them only through the sweep: the first stops
    each after a checkpoint, a second at once, as with ``cnnlab train``."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[int] = []

    def __enter__(self) -> _Signals:
        super().__enter__()
        return self

    def _handle(self, signum: int, _frame: object) -> None:  # every one, not only the first
        self.received.append(signum)

    def run(self, command: list[str], env: dict[str, str]) -> str | None:
        """Run ``command``, passing on the signals that arrive; None, or its stderr if it
        failed."""
        with subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        ) as process:
            passed = 0
            while True:
                try:
                    _, stderr = process.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    for signum in self.received[passed:]:
                        process.send_signal(signum)
                    passed = len(self.received)
        return None if process.returncode == 0 else stderr


def _row(run: SweepRun, run_dir: Path, wall: float) -> dict[str, Any]:
    model, meta = load_model(run_dir)
    final = meta["final"]
    return {
        "run": run.name,
        "model": run.config.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": run.config.epochs,
        "wall_seconds": round(wall, 1),
        "train_acc": round(final["train_acc"], 4),
        **({"val_acc": round(final["val_acc"], 4)} if "val_acc" in final else {}),
        "test_acc": round(final["test_acc"], 4),
    }


def columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The table's columns: with ``val_acc`` before ``test_acc`` when a run has one."""
    if not any("val_acc" in row for row in rows):
        return COLUMNS
    return (*COLUMNS[:-1], "val_acc", COLUMNS[-1])


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table, and a line on which column to choose by."""
    names = columns(rows)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['run']} | {row['model']} | failed: {row['error']} |")
            continue
        cells = [f"{row[c]:,}" if c == "parameters" else str(row.get(c, "")) for c in names]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "\nChoose a variant by val_acc; choosing it by test_acc tunes on the test set."
        if "val_acc" in names
        else "\nChoosing a variant by test_acc tunes on the test set: give the runs "
        "--val-size N (val_size in [base]) and choose by their val_acc."
    )
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, runs: Sequence[SweepRun], rows: Sequence[dict[str, Any]]) -> None:
    from cnnlab.viz import figure_bytes, plot_run_comparison

    atomic_write_bytes(out_dir / "sweep.md", markdown_table(rows).encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns(rows), "error"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "sweep.csv", buffer.getvalue().encode())
    histories = {}
    for run, row in zip(runs, rows, strict=True):
        if "error" not in row:
            histories[run.name] = read_metrics(out_dir / _slug(run.name))[1]
    if histories:  # the accuracy the table says to choose by
        chosen_by = "val_acc" if "val_acc" in columns(rows) else "test_acc"
        figure = plot_run_comparison(histories, chosen_by)
        atomic_write_bytes(out_dir / "sweep.png", figure_bytes(figure))


def sweep(
    path: Path, out_dir: Path | None = None, jobs: int = 1, max_variants: int = MAX_VARIANTS
) -> list[dict[str, Any]]:
    """Load ``path`` and run it into ``out_dir`` (default ``runs/sweep-<file>-<time>``)."""
    runs = load_sweep(path, max_variants)
    out_dir = out_dir or Path("runs") / f"sweep-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = run_sweep(runs, out_dir, jobs)
    if all("error" in r for r in rows):
        raise CnnlabError(f"every run of the sweep failed; see {out_dir / 'sweep.md'}")
    return rows
