"""Your own pictures, `--dataset folder:DIR`: the layouts, the conversion, the files that
are not images, the cache, and a run on them from training to export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import folder as folder_module
from cnnlab.data.folder import DEFAULT_SIZE, load_folder
from cnnlab.errors import ConfigError, DataError
from cnnlab.training import TrainConfig

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def write_pictures(root: Path, per_class: int = 10, mode: str = "RGB", seed: int = 0) -> None:
    """``per_class`` pictures of each colour, of random sizes, in class folders."""
    rng = np.random.default_rng(seed)
    print(f"pictures drawn with seed {seed}")
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(12, 48, size=2)
            noise = rng.normal(0, 20, size=(h, w, 3))
            pixels = np.clip(np.array(colour) * rng.uniform(0.7, 1.0) + noise, 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "RGB").convert(mode).save(
                root / name / f"{i}.png"
            )


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """Three colour classes of 10 RGB pictures, one corrupt PNG and one text file."""
    root = tmp_path / "pictures"
    write_pictures(root)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest" * 5)
    (root / "green" / "notes.txt").write_text("a caption, not a picture")
    return root


def test_class_folders_are_split_converted_and_the_unreadable_named(
    pictures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_folder(f"folder:{pictures}")
    assert data.classes == ("blue", "green", "red") and data.channels == 3
    assert data.train.images.shape == (24, 3, 32, 32) and data.test.images.shape == (6, 3, 32, 32)
    assert sorted(np.bincount(data.test.labels)) == [2, 2, 2]  # a fifth of each class
    assert data.skipped == ("green/notes.txt", "red/broken.png")
    err = capsys.readouterr().err
    assert (
        "skipped 2 of 32 files that are not readable images: green/notes.txt, red/broken.png" in err
    )
    red = data.train.images[data.train.labels == 2].mean(axis=(0, 2, 3))
    assert red[0] > 2 * red[1]  # the pixels are the pictures', in RGB order


def test_train_and_test_folders_grayscale_and_a_size_of_ones_own(tmp_path: Path) -> None:
    write_pictures(tmp_path / "train", mode="L")
    write_pictures(tmp_path / "test", per_class=3, mode="L", seed=1)
    data = load_folder(f"folder:{tmp_path}", size=(20, 24))
    assert data.channels == 1 and data.split == "train/ and test/"
    assert data.train.images.shape == (30, 20, 24) and data.test.images.shape == (9, 20, 24)
    rgb = load_folder(f"folder:{tmp_path}", channels=3)
    assert rgb.train.images.shape == (30, 3, 32, 32)


def test_a_second_load_comes_from_the_cache_until_a_file_changes(
    pictures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_folder(f"folder:{pictures}")
    decoded = []
    real = folder_module.pixels
    monkeypatch.setattr(folder_module, "pixels", lambda *a: decoded.append(1) or real(*a))
    again = load_folder(f"folder:{pictures}")
    assert decoded == [] and np.array_equal(again.train.images, first.train.images)
    stat = (pictures / "blue" / "0.png").stat()
    os.utime(pictures / "blue" / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_folder(f"folder:{pictures}")
    assert len(decoded) == 30  # the changed folder is decoded again


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"channels": 2}, r"channels must be 1 \(grayscale\) or 3 \(RGB\), got 2"),
        ({"channels": 3}, "--channels and --image-size convert the images of a folder dataset"),
        ({"dataset": "folder:x", "image_size": "0x5"}, "image size must be HxW"),
    ],
)
def test_bad_conversion_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**fields)  # type: ignore[arg-type]


def test_a_folder_without_classes_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "pictures" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="holds 1 class folder"):
        load_folder(f"folder:{tmp_path / 'pictures'}")
    with pytest.raises(DataError, match="is not a directory of class folders"):
        load_folder(f"folder:{tmp_path / 'nothing'}")


@pytest.mark.e2e
def test_a_run_on_ones_own_pictures_from_training_to_export(
    pictures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = [
        "--dataset",
        f"folder:{pictures}",
        "--model",
        "lenet-relu-max",
        "--lr",
        "0.1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(["train", *args, "--epochs", "2", "--out-dir", str(run)]) == 0
    assert main(["eval", str(run)]) == 0
    assert "on 6 folder:" in capsys.readouterr().out
    assert main(["predict", str(run), str(pictures / "red" / "3.png")]) == 0
    predicted = capsys.readouterr().out.split(": ")[1].split()[0]
    assert predicted in COLOURS
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    pytest.importorskip("onnxruntime")
    assert main(["export", str(run), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert (run / "metrics.csv").read_text().count("\n") == 4  # header and three epochs


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.e2e
def test_the_default_model_trains_on_a_folder(mode: str, tmp_path: Path) -> None:
    write_pictures(tmp_path / "pictures", mode=mode)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                f"folder:{tmp_path / 'pictures'}",
                "--epochs",
                "2",
                "--device",
                "cpu",
                "--quiet",
                "--out-dir",
                str(run),
            ]
        )
        == 0
    )
    channels = 1 if mode == "L" else 3
    meta = json.loads((run / "model.json").read_text())
    assert meta["preprocessing"]["input_shape"] == [channels, *DEFAULT_SIZE[channels]]
    assert meta["classes"] == ["blue", "green", "red"]
