"""Each Modern-CNN network trained by `cnnlab train` to the end on a CPU (one epoch of a
small subset, at a small side), then used by every command, all in one new process: eval,
predict, report, explore (where the page can hold it), export to ONNX (onnxruntime agrees)
and --resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import write_dataset

pytestmark = pytest.mark.slow  # about 2 minutes: seven networks, a process each

# name: (--model-options, whether the explorer page holds it)
NETWORKS = {
    "alexnet": ("resize=96", False),
    "vgg11": ("resize=32 ratio=4", False),
    "nin": ("resize=96", True),
    "googlenet": ("resize=32", True),
    "bnlenet": ("", True),
    "resnet18": ("resize=32", True),
    "densenet": ("resize=32", True),
}
USE = """
import json, sys
from cnnlab.cli import main

train, run, image, explorable = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
assert main(train) == 0, train
for words in (["eval", run], ["predict", run, image], ["report", run],
              ["export", run, "--format", "onnx"]):
    assert main(words) == 0, words
code = main(["explore", run])
assert code == (0 if explorable else 1), code
assert main(["train", "--resume", run, "--epochs", "2", "--quiet"]) == 0
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("modern") / "data"
    write_dataset(directory, n_train=96, n_test=40)
    return directory


@pytest.mark.parametrize("name", list(NETWORKS))
def test_a_modern_network_trains_and_every_command_uses_its_run(
    name: str, data: Path, tmp_path: Path
) -> None:
    options, explorable = NETWORKS[name]
    run = tmp_path / "run"
    train = [
        "train", "--model", name, "--model-options", options, "--dataset", "idx",
        "--data-dir", str(data), "--subset", "48", "--epochs", "1", "--batch-size", "16",
        "--device", "cpu", "--out-dir", str(run), "--quiet",
    ]  # fmt: skip
    Image.new("L", (28, 28), 200).save(tmp_path / "image.png")
    used = subprocess.run(
        [sys.executable, "-c", USE, json.dumps(train), str(run), str(tmp_path / "image.png"),
         str(int(explorable))],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert used.returncode == 0, used.stdout + used.stderr
    meta = json.loads((run / "model.json").read_text())
    assert meta["subset"] == 48 and meta["model"] == name
    assert meta["epochs_trained"] == 2  # resumed for a second epoch
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == {"nin": 0.05, "bnlenet": 0.1}.get(name, 0.01)  # the book's
    assert config["data"]["train"] == 48 and config["data"]["test"] == 9
    assert "test acc " in used.stdout and "on 9 idx test images" in used.stdout
    assert "onnxruntime against PyTorch" in used.stdout
    if not explorable:
        assert "parameters would make it" in used.stderr
        assert "The in-browser explorer cannot run it" in (run / "report.html").read_text()
