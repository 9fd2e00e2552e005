"""Hooks of one's own into a run: what each sees, stopping a run, failing in one."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from cnnlab.data import datasets as ds
from cnnlab.training import TrainConfig, TrainResult, train
from cnnlab.training.callbacks import CallbackError

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def tiny_config(directory: Path, out: Path, **fields: Any) -> TrainConfig:
    return TrainConfig(
        dataset="tiny",
        data_dir=str(directory),
        batch_size=16,
        device="cpu",
        out_dir=str(out),
        quiet=True,
        **fields,
    )


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_point(self, run: Any, row: dict[str, Any]) -> None:
        self.calls.append(("point", round(row["x"], 2)))

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> None:
        assert (run.run_dir / "checkpoint.safetensors").is_file()  # written before the hook
        self.calls.append(("epoch", row["epoch"]))

    def on_train_end(self, run: Any, result: TrainResult) -> None:
        self.calls.append(("end", len(result.history)))


def test_each_hook_sees_what_it_promises(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    recorder = Recorder()
    train(tiny_config(directory, tmp_path / "run", epochs=2), callbacks=[recorder])
    points = [x for kind, x in recorder.calls if kind == "point"]
    assert points == [0.17, 0.33, 0.5, 0.67, 0.83, 1.0, 1.17, 1.33, 1.5, 1.67, 1.83, 2.0]
    kinds = [kind for kind, _ in recorder.calls]
    assert kinds.index("epoch") == 6 and kinds[-1] == "end"
    assert [c for c in recorder.calls if c[0] != "point"] == [
        ("epoch", 1),
        ("epoch", 2),
        ("end", 2),
    ]


class StopAfter:
    """The docs' example: log each epoch to a CSV file of one's own; stop at a target."""

    def __init__(self, path: Path, epochs: int) -> None:
        self.path, self.epochs = path, epochs

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> bool:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row["epoch"], f"{row['test_acc']:.4f}"])
        return row["epoch"] >= self.epochs


def test_a_callback_stops_the_run_and_resume_goes_on_bit_for_bit(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    # fast: the fused kernels in both runs, not a measured choice that may differ between
    whole = train(tiny_config(directory, tmp_path / "whole", epochs=5, fast=True))
    stopped = train(
        tiny_config(directory, tmp_path / "stopped", epochs=5, fast=True),
        callbacks=[StopAfter(tmp_path / "mine.csv", 1)],
    )
    assert len(stopped.history) == 1 and (stopped.run_dir / "model.safetensors").is_file()
    assert (tmp_path / "mine.csv").read_text().splitlines()[0].startswith("1,")
    resumed = train(TrainConfig(resume=str(stopped.run_dir), epochs=5, quiet=True))
    assert len(resumed.history) == 5
    assert (resumed.run_dir / "model.safetensors").read_bytes() == (
        whole.run_dir / "model.safetensors"
    ).read_bytes()


class Broken:
    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> None:
        if row["epoch"] == 2:
            raise KeyError("test_accuracy")


def test_a_failing_callback_stops_the_run_naming_it_and_keeps_the_checkpoint(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    run = tmp_path / "run"
    with pytest.raises(
        CallbackError, match=r"callback Broken.on_epoch_end raised KeyError: 'test_accuracy'"
    ):
        train(tiny_config(directory, run, epochs=3), callbacks=[Broken()])
    resumed = train(TrainConfig(resume=str(run), quiet=True))  # from the epoch-2 checkpoint
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


def test_an_object_with_no_hook_is_refused_at_once(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    with pytest.raises(
        Exception, match="has none of the methods on_train_start, on_epoch_start, on_step, on_point"
    ):
        train(tiny_config(directory, tmp_path / "run", epochs=1), callbacks=[print])
    assert not (tmp_path / "run").exists()


class AnswersWith:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> Any:
        return self.answer


def test_any_truthy_answer_stops_and_an_undecidable_one_is_one_line(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    import numpy as np

    _, directory = tiny_dataset
    stopped = train(
        tiny_config(directory, tmp_path / "a", epochs=3), callbacks=[AnswersWith(np.True_)]
    )
    assert len(stopped.history) == 1
    going = train(
        tiny_config(directory, tmp_path / "b", epochs=2), callbacks=[AnswersWith(np.False_)]
    )
    assert len(going.history) == 2
    with pytest.raises(CallbackError, match="returned ndarray, which is neither true nor false"):
        train(tiny_config(directory, tmp_path / "c", epochs=2), callbacks=[AnswersWith(np.ones(3))])
