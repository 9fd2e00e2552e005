"""The Modern-CNN chapter's networks as registered models: `cnnlab summary --model NAME`
prints the same first and last lines as the book's shape cell for that network (both
editions' where they differ), each network builds at the book's input size, and the book's
training settings are the defaults of `cnnlab train --model NAME`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.training import TrainConfig

# (first line, last line) of each network's shape cell: the English edition's
# layer_summary((1, 1, SIDE, SIDE)), and the Chinese edition's loop over `net` where its
# last block differs (its ResNet and DenseNet end in their bare layers, not one Sequential).
BOOK = {
    "alexnet": ("Conv2d", [1, 96, 54, 54], "Linear", [1, 10], None),
    "vgg11": ("Sequential", [1, 64, 112, 112], "Linear", [1, 10], None),
    "nin": ("Sequential", [1, 96, 54, 54], "Flatten", [1, 10], None),
    "googlenet": ("Sequential", [1, 64, 24, 24], "Linear", [1, 10], None),
    "resnet18": ("Sequential", [1, 64, 24, 24], "Sequential", [1, 10], "Linear"),
    "densenet": ("Sequential", [1, 64, 24, 24], "Sequential", [1, 10], "Linear"),
}


def line(name: str, shape: list[int]) -> str:
    return f"{name} output shape:\t torch.Size({shape})"


@pytest.mark.parametrize("name", list(BOOK))
def test_summary_prints_the_books_first_and_last_shape_lines(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, first_shape, last, last_shape, zh_last = BOOK[name]
    assert main(["summary", "--model", name]) == 0
    out = capsys.readouterr().out.splitlines()
    book = out[out.index("as the book's shape cell prints it:") + 1 : out.index("")]
    assert book[0] == line(first, first_shape) and book[-1] == line(last, last_shape)
    table = out[out.index("") + 1 :]
    if zh_last is not None:  # the Chinese edition prints the last block's layers one by one
        assert table[-2].split()[1:3] == [zh_last, "10"]  # its class, its output shape
    assert table[-1].startswith("total")


def test_the_books_training_settings_are_the_defaults() -> None:
    assert TrainConfig.from_dict({"model": "nin"}).lr == 0.05
    assert TrainConfig.from_dict({"model": "alexnet"}).batch_size == 128
    assert TrainConfig.from_dict({"model": "alexnet", "lr": 0.3}).lr == 0.3
    assert TrainConfig.from_dict({"model": "lenet"}).lr == 0.9  # the LeNet chapter's


@pytest.mark.e2e
def test_summary_of_a_model_file_and_of_a_run_directory(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rgbnet.py").write_text(
        "from torch import nn\n\n\ndef rgbnet(num_classes=10, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                         nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    model = f"{tmp_path / 'rgbnet.py'}:rgbnet"
    assert main(["summary", "--model", model, "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "input 3x32x32" in out and "Conv2d output shape:\t torch.Size([1, 4, 30, 30])" in out
    row = next(line for line in out.splitlines() if line.startswith("2 "))
    assert row.split()[1:5] == ["MaxPool2d", "2x2", "2x2", "0x0"] and row.split()[-1] == "4x4"
    run, _ = tiny_run
    for words in (["--model", str(run)], [str(run)]):  # cnnlab summary RUN
        assert main(["summary", *words]) == 0
        assert "61,706" in capsys.readouterr().out  # the run's LeNet
