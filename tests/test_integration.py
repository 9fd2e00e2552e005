"""The real Fashion-MNIST files, end to end (CI installs Debian's dataset-fashion-mnist)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from tests.conftest import REAL_DATA, needs_real_data

pytestmark = [pytest.mark.slow, needs_real_data]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=600
    )


def test_real_files_verify_and_load() -> None:
    result = run("data", "verify", "--data-dir", str(REAL_DATA))
    assert result.returncode == 0, result.stderr
    train, test = load_dataset("fashion-mnist", REAL_DATA)
    assert train.images.shape == (60_000, 28, 28) and test.images.shape == (10_000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10


def test_one_epoch_then_eval_and_predict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the book's sigmoid LeNet barely moves in its first epoch (test acc ~0.1-0.3); the
    # ReLU/max-pooling variant reaches 0.74 in one (measured 2026-12-02, seed 0)
    result = run(
        "train",
        "--epochs",
        "1",
        "--model",
        "lenet-relu-max",
        "--lr",
        "0.1",
        "--out-dir",
        str(out),
        "--data-dir",
        str(REAL_DATA),
    )
    assert result.returncode == 0, result.stderr
    assert "examples/sec on cpu" in result.stdout
    final = json.loads((out / "model.json").read_text())["final"]
    assert final["test_acc"] > 0.65

    result = run("eval", str(out))
    assert result.returncode == 0, result.stderr
    assert f"test acc {final['test_acc']:.4f}" in result.stdout and "Ankle boot" in result.stdout

    _, test = load_dataset("fashion-mnist", REAL_DATA)
    Image.fromarray(test.images[0]).resize((200, 200)).save(tmp_path / "boot.png")
    result = run("predict", str(out), str(tmp_path / "boot.png"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(",") == 2


def test_example_trains_and_reports(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "train_and_report.py"
    result = subprocess.run(
        [sys.executable, str(example), "--epochs", "1", "--out-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"report: {tmp_path / 'run' / 'report.html'}" in result.stdout
    assert "feature maps of test #1: Pullover" in (tmp_path / "run" / "report.html").read_text()
