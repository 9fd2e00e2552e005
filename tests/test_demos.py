"""The chapter's demos and the shape calculator, through their functions and the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.demos import DEMOS, learn_kernel, run_demo
from tests.conftest import REAL_DATA, needs_real_data


@pytest.mark.parametrize("name", [n for n in DEMOS if n != "kernels"])
def test_each_demo_prints_the_chapters_numbers(name: str) -> None:
    text = run_demo(name).text
    expected = {
        "edges": "[ 0.,  1.,  0.,  0.,  0., -1.,  0.]",
        "learn-kernel": "epoch 10, loss 0.043",
        "padding-stride": "kernel (3, 5), padding (0, 1), stride (3, 4): conv2d gives 2x2, the formula 2x2",
        "channels": "[104., 120.]",
        "pooling": "[13., 15.]",
    }[name]
    assert expected in text
    if name == "channels":
        assert "[192., 224.]" in text and "equals the general routine: True" in text


def test_learn_kernel_options() -> None:
    assert "tensor([[ 1.,  0.],\n        [ 0., -1.]])" in learn_kernel("diagonal").text
    assert learn_kernel(steps=4).text.count("loss") == 4
    with pytest.raises(ValueError, match="unknown kernel 'round'; choose one of: vertical"):
        learn_kernel("round")
    with pytest.raises(ValueError, match="unknown demo 'nope'"):
        run_demo("nope")


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "edges", "--out", str(tmp_path / "edges.png")]) == 0
    assert (tmp_path / "edges.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["demo", "pooling", "--steps", "3"]) == 1
    assert "demo pooling takes no --steps" in capsys.readouterr().err


@needs_real_data
def test_kernels_demo_on_a_real_image(tmp_path: Path) -> None:
    out = tmp_path / "kernels.png"
    assert (
        main(["demo", "kernels", "--index", "6", "--data-dir", str(REAL_DATA), "--out", str(out)])
        == 0
    )
    assert out.stat().st_size > 10_000


def test_shape_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["shape", "--input", "8x8", "--kernel", "3x5", "--padding", "0x1", "--stride", "3x4"])
        == 0
    )
    assert capsys.readouterr().out == "2x2\n"
    lenet = [
        "--layer",
        "conv,k=5,p=2",
        "--layer",
        "pool,k=2",
        "--layer",
        "conv,k=5",
        "--layer",
        "pool,k=2",
    ]
    assert main(["shape", "--input", "28", *lenet]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1].split()[-3:] == ["5x5", "16x16", "4x4"]  # output, receptive field, jump
    assert main(["shape", "--input", "4", "--kernel", "5"]) == 1
    assert "kernel extent 5 is larger than the padded input 4" in capsys.readouterr().err
    assert main(["shape", "--input", "28", "--layer", "conv,q=3"]) == 1
    assert "bad layer option 'q=3'" in capsys.readouterr().err
