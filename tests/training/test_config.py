"""TrainConfig: what a run is given, checked where it is built; recipes; config files."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.training import TrainConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be a positive integer, got 0"),
        ("batch_size", -1, "batch_size must be a positive integer, got -1"),
        ("lr", 0.0, "lr must be a positive finite number, got 0.0"),
        ("lr", math.inf, "lr must be a positive finite number, got inf"),
        ("lr", math.nan, "lr must be a positive finite number, got nan"),
        ("seed", -3, r"seed must be an integer from 0 to 2\*\*63 - 1, got -3"),
        ("seed", 2**63, r"seed must be an integer from 0 to 2\*\*63 - 1, got 9223372036854775808"),
        ("resume", "", "resume must name a run directory, got ''"),
        ("device", "tpu", "device must be one of auto, cpu, cuda, mps, got 'tpu'"),
        ("optimizer", "lbfgs", "optimizer must be one of sgd, momentum, nesterov, adamw"),
        ("schedule", "step", "schedule must be one of constant, cosine, onecycle, warmup-cosine"),
        ("init", "zeros", "init must be one of xavier, kaiming, default, got 'zeros'"),
        ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\), got 1.0"),
        ("momentum", -0.1, r"momentum must be in \[0, 1\), got -0.1"),
        ("weight_decay", -1, "weight_decay must be >= 0 and finite, got -1"),
        ("weight_decay", math.inf, "weight_decay must be >= 0 and finite, got inf"),
        ("val_size", -1, "val_size must be a non-negative integer, got -1"),
        ("augment", "crop,rotate", "unknown augmentation rotate; choose from crop, flip, erase"),
        ("precision", "fp16", "precision must be one of fp32, bf16, got 'fp16'"),
    ],
)
def test_config_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_recipes_fill_in_what_is_not_given() -> None:
    best = TrainConfig.from_dict({"recipe": "best"})
    assert best != TrainConfig() and best.model_options
    assert TrainConfig.from_dict({"recipe": "best", "epochs": 2}).epochs == 2
    assert TrainConfig.from_dict({"recipe": "book"}) == TrainConfig()
    with pytest.raises(ConfigError, match="unknown recipe 'fast'; choose one of: book, best"):
        TrainConfig.from_dict({"recipe": "fast"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("kernel=3 kernel=5", "model option kernel is given twice"),
        ({"kernel": "3"}, "model option kernel takes a value like 5, got '3'"),
        ({"channels": [4, True]}, "model option channels takes a value like (6, 16)"),
        ({"batch_norm": 1}, "model option batch_norm takes a value like False, got 1"),
        ({"width": 3}, "bad model option 'width = 3'"),
    ],
)
def test_model_options_are_checked(options: object, message: str) -> None:
    from cnnlab.models import parse_options

    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_options("lenet", options)  # type: ignore[arg-type]


@pytest.mark.parametrize("flags", [{"early_stop": 2}, {"keep": "best"}])
def test_early_stop_and_keep_best_need_a_validation_split(flags: dict[str, object]) -> None:
    flag = "--" + next(iter(flags)).replace("_", "-")
    with pytest.raises(ConfigError, match=f"{flag} .* add --val-size N"):
        TrainConfig(**flags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tta": "yes"}, "tta must be true or false, got 'yes'"),
        ({"quiet": 1}, "quiet must be true or false, got 1"),
        ({"model": 5}, "model must be a string, got 5"),
    ],
)
def test_config_values_are_strict(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict(values)


def test_a_toml_file_nested_too_deeply_is_a_one_line_error(tmp_path: Path) -> None:
    """tomllib recurses per level: 5,000 nested arrays raised RecursionError."""
    from cnnlab.fsutil import load_toml

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(
        ConfigError, match=r"deep\.toml: its tables or arrays are nested too deeply"
    ):
        load_toml(deep, "config file")


def test_a_model_option_is_checked_by_the_model_not_the_config(tmp_path: Path) -> None:
    from cnnlab.training.parts import build_model

    config = TrainConfig(backend="jax")  # a word: the config has nothing against it
    options = {"num_classes": 10, "in_channels": 1, "image_size": (28, 28), "backend": "jax"}
    with pytest.raises(ConfigError, match="unknown backend 'jax'; choose one of: torch, scratch"):
        build_model(config, options, (1, 28, 28), torch.device("cpu"))
    with pytest.raises(ConfigError, match="backend must be a string, got 3"):
        TrainConfig(backend=3)  # type: ignore[arg-type]


def test_every_field_is_what_is_trained_or_how_it_runs() -> None:
    from cnnlab.training.launch import RESUMABLE, launch_fields, resumed_config

    launch = set(launch_fields())
    assert launch == {
        "data_dir",
        "device",
        "out_dir",
        "checkpoint_every",
        "resume",
        "nproc",
        "max_restarts",
        "trust_model_file",
        "fast",
        "remeasure",
        "threads",
        "compile",
        "tensorboard",
        "quiet",
        "offline",
    }
    assert set(RESUMABLE) == (launch - {"out_dir"}) | {"epochs"}
    saved = TrainConfig(epochs=2)
    with pytest.raises(ConfigError, match=r"--lr 0\.1 differs from the run's saved lr = 0\.9"):
        resumed_config(saved, TrainConfig(lr=0.1), {"lr"}, 1)
    resumed = resumed_config(saved, TrainConfig(device="cpu", quiet=True), {"device", "quiet"}, 1)
    assert (resumed.device, resumed.quiet, resumed.lr) == ("cpu", True, 0.9)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"lr": 1e39}, r"lr must be a positive finite number, got 1e\+39 \(float32"),
        ({"weight_decay": 1e300}, r"weight_decay must be >= 0 and finite, got 1e\+300"),
        ({"out_dir": 5}, "out_dir must be a directory's path, got 5"),
        ({"data_dir": ["a"]}, "data_dir must be a directory's path"),
    ],
)
def test_values_are_checked_where_the_config_is_made(values: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        TrainConfig(**values)


def test_a_path_is_as_good_as_its_string(tmp_path: Path) -> None:
    config = TrainConfig(out_dir=tmp_path / "run", data_dir=tmp_path)  # type: ignore[arg-type]
    assert config.out_dir == str(tmp_path / "run") and config.data_dir == str(tmp_path)
