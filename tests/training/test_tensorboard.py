"""TensorBoard event files of a run (the optional extra), and the message without it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from cnnlab.data import datasets as ds
from cnnlab.errors import ConfigError
from cnnlab.training import train
from tests.training.test_trainer import tiny_config

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def test_tensorboard_events_hold_the_run(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnlab.training.tensorboard import read_scalars

    _, directory = tiny_dataset
    result = train(tiny_config(tmp_path, directory, tensorboard=True, schedule="cosine"))
    scalars = read_scalars(result.run_dir)
    assert [step for step, _ in scalars["epoch/test_acc"]] == [1, 2]
    assert [v for _, v in scalars["epoch/test_acc"]] == pytest.approx(
        [r["test_acc"] for r in result.history]
    )
    assert len(scalars["train/loss"]) == 12  # the 12 curve points
    lrs = [v for _, v in scalars["train/lr"]]
    assert lrs[0] > lrs[-1]  # the cosine schedule, as it went
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert events.Tags()["images"] == ["conv1/kernels"]


def test_tensorboard_without_the_package_names_the_extra(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    _, directory = tiny_dataset
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=re.escape("pip install 'cnnlab[tensorboard]'")):
        train(tiny_config(tmp_path, directory, tensorboard=True))
    assert not (tmp_path / "run").exists()
