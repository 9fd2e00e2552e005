"""`cnnlab sweep`: the file format, and real runs on a tiny IDX dataset."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from cnnlab.cli import build_parser, main, train_config
from cnnlab.errors import ConfigError
from cnnlab.sweep import load_sweep
from cnnlab.training import TrainConfig
from tests.conftest import write_dataset

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

EXAMPLE = Path(__file__).parents[1] / "examples" / "exercise_sweep.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_runs_and_grid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[base]
epochs = 2
[[run]]
name = "max"
model = "lenet-max"
[grid]
lr = [0.9, 0.3]
batch_size = [128]
""",
    )
    runs = load_sweep(path)
    assert [r.name for r in runs] == ["max", "lr=0.9 batch_size=128", "lr=0.3 batch_size=128"]
    assert runs[0].config.model == "lenet-max" and runs[0].config.epochs == 2
    assert runs[2].config.lr == 0.3 and runs[2].config.batch_size == 128
    assert len(load_sweep(EXAMPLE)) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bases]\nepochs = 1", "unknown sections \\['bases'\\]"),
        ("[[run]]\nname = 'a'\nepoch = 3", "run 'a': unknown config keys \\['epoch'\\]"),
        ("[[run]]\nname = 'a'\nlr = -1", "run 'a': lr must be a positive finite number"),
        ("[grid]\nlr = []", "every \\[grid\\] entry must be a non-empty list"),
        ("[base]\nepochs = 1", "no runs"),
        ("[[run]]\nname = 'a'\n[[run]]\nname = 'a'", "two runs have the same name"),
        ("[[run]\n", "not a readable TOML file"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, text))


def test_flags_give_back_the_config() -> None:
    # a value that begins with "-" stays the flag's value (--data-dir=-weird)
    config = TrainConfig(
        model="lenet-bn", lr=0.1, fast=False, model_options="kernel=3", data_dir="-weird"
    )
    args = build_parser().parse_args(["train", *config.to_flags(("out_dir", "quiet"))])
    assert train_config(args)[0] == TrainConfig(**{**config.to_dict(), "quiet": False})


def test_a_sweep_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path / "data", n_train=64, n_test=32)
    path = write(
        tmp_path,
        f"""
[base]
dataset = "idx"
data_dir = "{tmp_path / "data"}"
epochs = 2
batch_size = 16
[[run]]
name = "book"
[[run]]
name = "wide"
model_options = "channels=8,16"
[[run]]
name = "broken"
model_options = "kernel=9 channels=6,16,32"
""",
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out-dir", str(out), "--jobs", "2"]) == 1  # one failed
    table = capsys.readouterr().out
    assert "| book | lenet | 61,706 | 2 |" in table
    assert "| broken | lenet | failed: error: 3 conv blocks with kernel 9" in table
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["run"] for r in rows] == ["book", "wide", "broken"]
    assert int(rows[1]["parameters"]) > 61_706 and 0 <= float(rows[1]["test_acc"]) <= 1
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "sweep.md").read_text() == table
    assert main(["sweep", str(path), "--out-dir", str(out)]) == 1  # never overwrites
    assert "already exists and is not empty" in capsys.readouterr().err


def test_a_sweep_cannot_resume(tmp_path: Path) -> None:
    from cnnlab.errors import ConfigError
    from cnnlab.sweep import load_sweep

    (tmp_path / "s.toml").write_text('[[run]]\nname = "a"\nresume = "runs/x"\n')
    with pytest.raises(ConfigError, match="resume is not a key it can set"):
        load_sweep(tmp_path / "s.toml")


def test_a_grid_over_the_limit_is_refused_before_it_is_listed(tmp_path: Path) -> None:
    """10**10 variants were listed until memory ran out; 10,000 started without a word."""
    import time

    big = write(tmp_path, "[grid]\n" + "\n".join(f"k{i} = {list(range(10))}" for i in range(10)))
    start = time.perf_counter()
    with pytest.raises(
        ConfigError,
        match=r"10,000,000,000 variants .* a grid of 10 x 10 x .* more than 200; .* --max-variants 10000000000",
    ):
        load_sweep(big)
    assert time.perf_counter() - start < 1
    grid = write(
        tmp_path,
        "[base]\nepochs = 1\n[grid]\nseed = "
        + str(list(range(100)))
        + "\nlr = "
        + str([0.1 * (i + 1) for i in range(100)]),
    )
    with pytest.raises(ConfigError, match="10,000 variants"):
        load_sweep(grid)
    assert len(load_sweep(grid, max_variants=10_000)) == 10_000


def test_sigint_stops_the_sweep_within_one_variant_and_writes_its_table(tmp_path: Path) -> None:
    """Ctrl-C to the sweep's process group: the running variant stops with a checkpoint,
    no other starts, and the table says what finished."""
    import os
    import signal
    import subprocess
    import sys
    import time

    write_dataset(tmp_path / "data", n_train=96, n_test=32)
    path = write(
        tmp_path,
        f"""
[base]
dataset = "idx"
data_dir = "{tmp_path / "data"}"
batch_size = 8
checkpoint_every = 1
[grid]
seed = [0, 1, 2]
epochs = [400]
""",
    )
    out = tmp_path / "sweep"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "sweep", str(path), "--out-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    first = out / "seed-0-epochs-400" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.exists(), "the first variant never checkpointed"
    stopped_at = time.monotonic()
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C at the terminal does
    _, stderr = sweep.communicate(timeout=120)
    assert time.monotonic() - stopped_at < 60
    assert sweep.returncode == 130, stderr
    assert "SIGINT: the sweep stopped with 0 of 3 variants finished" in stderr
    table = (out / "sweep.md").read_text()
    assert re.search(
        r"\| seed=0 epochs=400 \| lenet \| failed: SIGINT: stopped (at|after) epoch \d+", table
    )
    assert "checkpoint saved. Resume with: cnnlab train --resume" in table
    assert table.count("not run (stopped)") == 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-0-epochs-400"]


def test_the_table_shows_validation_accuracy_and_says_which_column_to_choose_by() -> None:
    from cnnlab.sweep import markdown_table

    row = {
        "run": "a",
        "model": "lenet",
        "parameters": 61706,
        "epochs": 2,
        "wall_seconds": 9.0,
        "train_acc": 0.8,
        "test_acc": 0.79,
    }
    plain = markdown_table([row])
    assert "val_acc" not in plain.splitlines()[0]
    assert "tunes on the test set: give the runs --val-size N" in plain
    held_out = markdown_table([{**row, "val_acc": 0.81}, {**row, "run": "b"}])
    header, _, first, second = held_out.splitlines()[:4]
    assert header.endswith("| train_acc | val_acc | test_acc |")
    assert first.endswith("| 0.8 | 0.81 | 0.79 |") and second.endswith("| 0.8 |  | 0.79 |")
    assert "Choose a variant by val_acc" in held_out
