"""Models of one's own: a function in a file or module, or registered under a name, with
everything a registered LeNet gets (run directory, eval from a terminal, resume, the
fused CPU kernels), and an edited or missing file caught before its run is used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.models.registry import _REGISTRY, register_model
from cnnlab.training import TrainConfig, train
from tests.conftest import run_cnnlab, write_dataset

NET = """\
from torch import nn


def net(num_classes, width=6):
    return nn.Sequential(
        nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(num_classes),
    )
"""


@pytest.mark.e2e
def test_a_model_file_trains_and_its_run_is_usable_from_anywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, n_train=96, n_test=40)
    (tmp_path / "net.py").write_text(NET)
    run = tmp_path / "run"
    config = TrainConfig(
        model=str(tmp_path / "net.py") + ":net",
        model_options="width=4",
        dataset="idx",
        data_dir=str(data),
        epochs=1,
        batch_size=16,
        lr=0.1,
        device="cpu",
        fast=True,
        quiet=True,
        out_dir=str(run),
    )
    train(config)
    meta = json.loads((run / "model.json").read_text())
    assert meta["model_file"]["path"] == str(tmp_path / "net.py")
    assert meta["model_options"]["width"] == 4
    environment = json.loads((run / "config.json").read_text())["environment"]
    assert environment["cpu_path"]["path"] == "fused"  # its conv -> ReLU -> max pool block
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_cnnlab("eval", str(run), cwd=elsewhere)
    assert done.returncode == 0 and done.stdout.startswith("test acc "), done.stderr
    resumed = train(TrainConfig(resume=str(run), epochs=2, quiet=True))
    assert len(resumed.history) == 2
    (tmp_path / "net.py").write_text(NET.replace("width=6", "width=8"))
    done = run_cnnlab("eval", str(run), cwd=elsewhere)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert (
        f"the model's code {tmp_path / 'net.py'} changed since the run was trained" in done.stderr
    )
    (tmp_path / "net.py").unlink()
    done = run_cnnlab("eval", str(run), cwd=elsewhere)
    assert done.returncode == 1 and "is gone" in done.stderr


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("missing.py:net", "missing.py not found"),
        ("net.py:nothing", "defines no function 'nothing'"),
        ("broken.py:net", "importing broken.py failed: NameError"),
        ("no_such_module_here:net", "importing no_such_module_here failed: ModuleNotFoundError"),
        ("net.py", "unknown model 'net.py'"),
    ],
)
def test_a_bad_reference_is_one_clear_line(
    reference: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "broken.py").write_text("undefined_name\n")
    with pytest.raises(ConfigError, match=message):
        create_model(reference, num_classes=10)


def test_register_model_takes_any_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cnnlab.models.registry._REGISTRY", dict(_REGISTRY))

    @register_model("test-mlp")
    def mlp(hidden: int = 16) -> nn.Module:  # no num_classes: it decides for itself
        return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    model = create_model(
        "test-mlp", num_classes=10, in_channels=1, image_size=(28, 28), backend="torch", hidden=8
    )
    assert model[1].out_features == 8
    with pytest.raises(ConfigError, match="model 'test-mlp' has no option 'depth'"):
        create_model("test-mlp", depth=3)
