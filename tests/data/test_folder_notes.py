"""Own pictures say what they found: one line of what a folder holds, a note when an epoch
would be a handful of steps, `cnnlab viz batch` drawing a batch as the network gets it, a
test image written to a file, and the docs' net.py on grayscale and RGB folders alike."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from tests.conftest import run_cnnlab, write_dataset

ROOT = Path(__file__).resolve().parents[2]


def shapes(root: Path, mode: str, per_class: int = 30) -> Path:
    """Three classes of simple pictures (bright squares in three places), ``mode`` L or RGB."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("left", "middle", "right")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            array[10:22, 2 + 10 * k : 10 + 10 * k] = 230
            Image.fromarray(array).convert(mode).save(root / name / f"{i}.png")
    return root


def docs_net() -> str:
    text = (ROOT / "docs" / "training.md").read_text()
    found = re.search(r"```python\n# net\.py\n(.*?)```", text, re.S)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.e2e
def test_the_docs_net_py_trains_on_grayscale_and_rgb_folders_and_says_what_it_found(
    mode: str, tmp_path: Path
) -> None:
    shapes(tmp_path / "pictures", mode)
    (tmp_path / "net.py").write_text(docs_net())
    done = run_cnnlab(
        "train", "--dataset", "folder:pictures", "--model", "net.py:net", "--lr", "0.1",
        "--epochs", "1", "--device", "cpu", "--out-dir", "run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    channels = 1 if mode == "L" else 3
    size = 28 if mode == "L" else 32
    assert (
        "folder:pictures: found 72 training and 18 test images of 3 classes (left, middle, "
        f"right), as {channels}-channel {size}x{size}" in done.stderr
    )
    assert (
        "each epoch is 1 step (72 training images, --batch-size 256)" in done.stdout + done.stderr
    )
    assert "--batch-size 7 gives 11 steps an epoch" in done.stdout + done.stderr


@pytest.mark.e2e
def test_a_model_with_the_wrong_channels_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    shapes(tmp_path / "pictures", "RGB")
    fixed = docs_net().replace("nn.Conv2d(in_channels,", "nn.Conv2d(1,")
    (tmp_path / "net.py").write_text(fixed.replace("in_channels, width=16", "width=16"))
    done = run_cnnlab(
        "train", "--dataset", "folder:pictures", "--model", "net.py:net", "--epochs", "1",
        "--out-dir", "run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: model ")
        and "layer 0 (Conv2d) fails on input (2, 3, 32, 32)" in last
    )
    assert "give it in_channels=3" in last and "--channels 1" in last
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_viz_batch_draws_what_the_network_gets(tmp_path: Path) -> None:
    shapes(tmp_path / "pictures", "RGB")
    out = tmp_path / "batch.png"
    words = ["viz", "batch", "--dataset", f"folder:{tmp_path / 'pictures'}", "--out", str(out)]
    assert main([*words, "--augment", "flip", "--count", "12"]) == 0
    with Image.open(out) as image:
        assert image.size[0] > 600  # a grid, 8 a row
    assert main(["viz", "batch", str(tmp_path)]) == 1  # a run directory is not a dataset


def test_data_sample_writes_a_test_image(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", n_train=16, n_test=8)
    out = tmp_path / "x.png"
    code = main(["data", "sample", "--dataset", "idx", "--data-dir", str(tmp_path / "data"),
                 "--index", "3", "-o", str(out)])  # fmt: skip
    assert code == 0
    from cnnlab.data import load_dataset

    _, test = load_dataset("idx", tmp_path / "data")
    with Image.open(out) as image:
        assert np.array_equal(np.asarray(image), test.images[3])
    assert main(["data", "sample", "--dataset", "idx", "--data-dir", str(tmp_path / "data"),
                 "--index", "8"]) == 1  # fmt: skip
