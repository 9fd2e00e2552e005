"""The learning-rate range test on tiny data."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.data import datasets as ds
from cnnlab.errors import ConfigError
from cnnlab.training import TrainConfig
from cnnlab.training.lr_find import LAG, SETTLE, LrFindResult, suggest


def test_range_test_writes_its_plot_and_suggests_a_rate(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real short run: a batch-norm net on 96 tiny images learns within 200 steps."""
    _, directory = tiny_dataset
    config = TrainConfig(
        dataset="tiny",
        data_dir=str(directory),
        model="lenet-bn",
        batch_size=16,
        device="cpu",
        quiet=True,
    )
    result = cnnlab.lr_find(config, steps=200, out_dir=tmp_path / "lr")
    assert (tmp_path / "lr" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs == sorted(result.lrs)
    assert len(result.lrs) == len(result.losses) <= 200
    assert result.suggestion is not None, result.how
    assert "one-cycle peak" in result.how and result.guess == pytest.approx(math.log(10))
    # the suggestion lies where the loss falls, past the smoothing's start-up, LAG steps
    # before the smoothed loss's lowest point (or at the settled start, if that is nearer)
    at = result.lrs.index(result.suggestion)
    lowest = min(range(SETTLE, len(result.losses)), key=result.losses.__getitem__)
    assert at == max(SETTLE, lowest - LAG)
    assert result.losses[lowest] < result.losses[at] <= result.losses[SETTLE]

    monkeypatch.chdir(tmp_path)  # the default output directory is a fresh one under runs/
    code = main(
        [
            "lr-find",
            "--dataset",
            "tiny",
            "--data-dir",
            str(directory),
            "--batch-size",
            "16",
            "--steps",
            "30",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    [made] = (tmp_path / "runs").iterdir()
    assert made.name.startswith("lr-find-lenet-") and (made / "lr_find.png").exists()


def curve(*pieces: list[float]) -> tuple[list[float], list[float]]:
    """Rates growing tenfold every 20 points from 1e-4, and the losses given."""
    losses = [v for piece in pieces for v in piece]
    return [1e-4 * 10 ** (i / 20) for i in range(len(losses))], losses


def test_start_up_noise_before_a_clear_fall_is_not_the_suggestion() -> None:
    """The moving average's start-up swings wildly; then a plateau, then a clear fall
    between points 60 and 100, then the divergence."""
    rng = random.Random(0)
    print("seed 0")
    start_up = [2.3 + (1.5 if i % 2 else -0.6) * (1 - i / 20) for i in range(20)]
    plateau = [2.3 + rng.uniform(-0.01, 0.01) for _ in range(40)]
    fall = [2.3 - 1.8 * (i + 1) / 40 + rng.uniform(-0.03, 0.03) for i in range(40)]
    lrs, losses = curve(start_up, plateau, fall, [0.5 + 0.3 * i for i in range(20)])
    lr, how = suggest(lrs, losses, guess=math.log(10))
    assert lr is not None and lrs[60] <= lr <= lrs[99], how
    lowest = min(range(len(losses)), key=losses.__getitem__)  # in the fall's last points
    assert lr == lrs[lowest - LAG] and "one-cycle peak" in how


def test_a_flat_curve_has_no_suggestion() -> None:
    rng = random.Random(1)
    print("seed 1")
    lrs, losses = curve([2.303 + rng.uniform(-0.02, 0.02) for _ in range(300)])
    lr, how = suggest(lrs, losses, guess=math.log(10))
    assert lr is None
    assert "no reliable suggestion" in how and "--steps 600" in how and "lenet-bn" in how


def test_a_curve_that_only_rises_has_no_suggestion() -> None:
    lrs, losses = curve([2.3 + 0.01 * i for i in range(100)])
    assert suggest(lrs, losses, guess=math.log(10))[0] is None


def test_a_fall_that_stays_above_guessing_has_no_suggestion() -> None:
    """The book's sigmoid LeNet: from 2.55 down to 2.30, never below ln 10."""
    lrs, losses = curve([2.55 - 0.25 * i / 299 for i in range(300)])
    lr, how = suggest(lrs, losses, guess=math.log(10))
    assert lr is None and "guessing model's" in how


def test_without_a_suggestion_the_plot_shows_only_the_curve(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The book's sigmoid net on random tiny data learns nothing in 20 steps."""
    _, directory = tiny_dataset
    code = main(
        [
            "lr-find",
            "--dataset",
            "tiny",
            "--data-dir",
            str(directory),
            "--batch-size",
            "16",
            "--steps",
            "20",
            "--device",
            "cpu",
            "--out-dir",
            str(tmp_path / "lr"),
        ]
    )
    assert code == 0
    assert "no reliable suggestion: within 20 steps" in capsys.readouterr().out
    result = LrFindResult(lrs=[1e-4, 1e-3], losses=[2.3, 2.3], suggestion=None, guess=2.3)
    [ax] = result.figure().axes
    assert len(ax.lines) == 1 and ax.get_legend() is None
    marked = LrFindResult(lrs=[1e-4, 1e-3], losses=[2.3, 1.0], suggestion=1e-4, guess=2.3)
    [ax] = marked.figure().axes
    assert len(ax.lines) == 3  # the curve, the suggestion, the guessing loss


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
        suggest([1e-4, 1e-3], [2.0, 9.0], guess=math.log(10))


def test_range_refused_when_empty() -> None:
    with pytest.raises(ConfigError, match="need 0 < start lr < end lr"):
        cnnlab.lr_find(TrainConfig(), start_lr=1.0, end_lr=0.1)
    with pytest.raises(ConfigError, match=r"end lr <= 3\.403e\+38 \(what float32 holds\)"):
        cnnlab.lr_find(TrainConfig(), start_lr=1.0, end_lr=1e300)


def test_training_flags_lr_find_ignores_are_refused_not_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "lr-find",
            "--epochs",
            "3",
            "--schedule",
            "cosine",
            "--batch-size",
            "64",
            "--out-dir",
            str(tmp_path / "lr"),
        ]
    )
    assert code == 1 and not (tmp_path / "lr").exists()
    err = capsys.readouterr().err
    assert "lr-find does not use --epochs, --schedule:" in err and "--batch-size" not in err


def test_the_suggestion_comes_with_the_command_that_trains_with_it(
    tiny_dataset: tuple[ds.Dataset, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    from cnnlab.cli import train_config

    _, directory = tiny_dataset
    words = ["--dataset", "tiny", "--data-dir", str(directory), "--model", "lenet-bn"]
    words += ["--batch-size", "16", "--device", "cpu"]
    assert main(["lr-find", *words, "--steps", "200", "--out-dir", str(tmp_path / "lr")]) == 0
    out = capsys.readouterr().out
    suggested = re.search(r"suggested lr (\S+):", out)
    line = next((x for x in out.splitlines() if x.startswith("train with it")), None)
    assert suggested is not None and line is not None, out
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:2] == ["cnnlab", "train"]
    from cnnlab.cli import build_parser

    config, _ = train_config(build_parser().parse_args(command[1:]))
    assert config.lr == float(suggested.group(1)) and config.schedule == "onecycle"
    assert (config.model, config.batch_size, config.data_dir) == ("lenet-bn", 16, str(directory))
