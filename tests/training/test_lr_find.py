"""The learning-rate range test on tiny data."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.data import datasets as ds
from cnnlab.errors import ConfigError
from cnnlab.training import TrainConfig
from cnnlab.training.lr_find import suggest


def test_range_test_writes_its_plot_and_suggests_a_rate(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, directory = tiny_dataset
    config = TrainConfig(dataset="tiny", data_dir=str(directory), model="lenet-relu-max",
                         batch_size=16, device="cpu", quiet=True)  # fmt: skip
    result = cnnlab.lr_find(config, steps=60, out_dir=tmp_path / "lr")
    assert (tmp_path / "lr" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs == sorted(result.lrs)
    assert len(result.lrs) == len(result.losses) <= 60
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    assert "fell fastest" in result.how
    # the loss near the suggestion is lower than at the start: the rate does train
    at = result.lrs.index(result.suggestion)
    assert min(result.losses[at:]) < result.losses[0]

    monkeypatch.chdir(tmp_path)  # the default output directory is a fresh one under runs/
    code = main(["lr-find", "--dataset", "tiny", "--data-dir", str(directory), "--batch-size",
                 "16", "--steps", "30", "--device", "cpu"])  # fmt: skip
    assert code == 0
    [made] = (tmp_path / "runs").iterdir()
    assert made.name.startswith("lr-find-lenet-") and (made / "lr_find.png").exists()


def test_the_model_the_config_builds_is_left_alone(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.training import lr_find as module

    _, directory = tiny_dataset
    built = []
    original = module.build_parts

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        parts = original(*args, **kwargs)
        built.append((parts, [p.detach().clone() for p in parts.model.parameters()]))
        return parts

    monkeypatch.setattr(module, "build_parts", spy)
    config = TrainConfig(dataset="tiny", data_dir=str(directory), batch_size=16, device="cpu")
    module.lr_find(config, steps=20, out_dir=tmp_path / "lr")
    [(parts, before)] = built
    assert all(p.equal(b) for p, b in zip(parts.model.parameters(), before, strict=True))
    assert not parts.optimizer.state  # never stepped


def test_suggestion_needs_a_curve() -> None:
    with pytest.raises(ConfigError, match="lower --start-lr"):
        suggest([1e-4, 1e-3], [2.0, 9.0])
    lr, _ = suggest([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.3, 2.2, 1.0, 0.9, 5.0])
    assert lr == 1e-2  # the biggest drop per e-fold: from 1e-2 to 1e-1


def test_range_refused_when_empty() -> None:
    with pytest.raises(ConfigError, match="need 0 < start lr < end lr"):
        cnnlab.lr_find(TrainConfig(), start_lr=1.0, end_lr=0.1)
