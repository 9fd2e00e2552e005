"""`cnnlab sweep`: the file format, and real runs on a tiny IDX dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cnnlab.cli import build_parser, main, train_config
from cnnlab.errors import ConfigError
from cnnlab.sweep import load_sweep
from cnnlab.training import TrainConfig
from tests.conftest import write_dataset

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
    [("[bases]\nepochs = 1", "unknown sections \\['bases'\\]"),
     ("[[run]]\nname = 'a'\nepoch = 3", "run 'a': unknown config keys \\['epoch'\\]"),
     ("[[run]]\nname = 'a'\nlr = -1", "run 'a': lr must be a positive finite number"),
     ("[grid]\nlr = []", "every \\[grid\\] entry must be a non-empty list"),
     ("[base]\nepochs = 1", "no runs"),
     ("[[run]]\nname = 'a'\n[[run]]\nname = 'a'", "two runs have the same name"),
     ("[[run]\n", "not a readable TOML file")],
)  # fmt: skip
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, text))


def test_flags_give_back_the_config() -> None:
    config = TrainConfig(model="lenet-bn", lr=0.1, fast=False, model_options="kernel=3")
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
