"""A model of one's own is tried on one blank batch before a run writes anything: each way
it can fail to fit the data is one line that names the layer (or the output) and the fix,
and no run directory is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.trial import try_on_batch
from tests.conftest import run_cnnlab, write_dataset


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x.flatten(1))}


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x - 1)  # blank images: log of -1


CASES = {
    "a kernel larger than the map": (
        nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.Conv2d(4, 4, 13)),
        "layer 2 (Conv2d) fails on input (2, 4, 12, 12)",
    ),
    "a map shrunk to nothing": (
        nn.Sequential(*[nn.MaxPool2d(2) for _ in range(6)], nn.Flatten(), nn.LazyLinear(10)),
        "map is too small for it",
    ),
    "no parameters": (nn.Sequential(nn.Flatten(), nn.AdaptiveAvgPool1d(10)), "has no parameters"),
    "fewer outputs than classes": (
        nn.Sequential(nn.Flatten(), nn.Linear(784, 3)),
        "gives 3 scores per image, but the data has 10 classes",
    ),
    "a dict output": (DictOut(), "returns a dict, not a tensor of class scores"),
    "outputs that are not numbers": (
        nn.Sequential(Log(), nn.Flatten(), nn.Linear(784, 10)),
        "not finite numbers before any training",
    ),
    "RGB images into a grayscale layer": (
        nn.Sequential(nn.Conv2d(1, 6, 5), nn.Flatten(), nn.LazyLinear(10)),
        "give it in_channels=3",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_misfit_is_one_line_naming_where_and_the_fix(case: str) -> None:
    model, said = CASES[case]
    shape = (3, 28, 28) if "RGB" in case else (1, 28, 28)
    with pytest.raises(ConfigError) as refused:
        try_on_batch(model, shape, 10, "net.py:net")
    assert said in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.e2e
def test_a_misfit_model_leaves_no_run_directory(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", n_train=32, n_test=16)
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n\ndef net(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.Conv2d(4, 4, 13))\n"
    )
    run = tmp_path / "run"
    done = run_cnnlab(
        "train", "--model", "net.py:net", "--dataset", "idx", "--data-dir",
        str(tmp_path / "data"), "--out-dir", str(run), "--device", "cpu", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: model ") and len(done.stderr.strip().splitlines()) == 1
    assert "layer 2 (Conv2d) fails on input (2, 4, 12, 12)" in done.stderr
    assert not run.exists()
