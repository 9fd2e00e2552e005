"""Images from elsewhere: a small file that decodes to gigabytes is refused from its header
(in predict and in folder training), 16-bit and float pixels are scaled or refused by name,
EXIF orientation is applied, an empty class is refused by name, a class folder whose name
is not UTF-8 is drawn, and pixels that are not numbers are never classified."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.folder import load_folder
from cnnlab.data.images import open_image, pixels
from cnnlab.errors import DataError
from cnnlab.models import create_model
from cnnlab.predict import Classifier, load_image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, side: int = 13000) -> None:
    """A real, whole PNG of ``side`` x ``side`` 16-bit grayscale zeros: a few hundred kB
    that decode to side * side * 2 bytes (13000: 338 MB; PIL's float copy 3.9 GB)."""
    row = b"\0" * (1 + 2 * side)  # filter byte, then the row
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    bomb_png(path)
    assert path.stat().st_size < 1_000_000
    return path


MEASURE = """
import resource, sys, time
from pathlib import Path
from cnnlab.predict import load_image
from cnnlab.errors import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_image(Path(sys.argv[1]), (28, 28))
    print("decoded")
except DataError as e:
    print(e)
seconds = time.perf_counter() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(f"{seconds:.3f} {grown}")
"""


@pytest.mark.e2e
def test_a_decompression_bomb_costs_under_200_mb_and_2_s_and_is_refused_by_name(bomb: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(bomb)], capture_output=True, text=True, timeout=60
    )
    message, numbers = done.stdout.strip().splitlines()
    seconds, grown_kb = float(numbers.split()[0]), int(numbers.split()[1])
    print(message, seconds, grown_kb)
    assert message == (
        f"{bomb}: 13000x13000 pixels, more than the 25,000,000 cnnlab decodes; shrink the "
        "image, or raise the limit with CNNLAB_MAX_PIXELS=N"
    )
    assert seconds < 2 and grown_kb < 200_000
    # the limit is the user's to raise: then the same file decodes (here: a smaller one)
    small = bomb.with_name("small.png")
    bomb_png(small, side=600)
    env = {**os.environ, "CNNLAB_MAX_PIXELS": "100000"}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(small)], capture_output=True, text=True, env=env
    )
    assert "600x600 pixels, more than the 100,000" in done.stdout
    env["CNNLAB_MAX_PIXELS"] = "400000"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(small)], capture_output=True, text=True, env=env
    )
    assert done.stdout.startswith("decoded"), done.stdout + done.stderr


def class_folders(root: Path, classes: dict[str, int], mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            array = rng.integers(0, 255, (12, 12, 3) if mode == "RGB" else (12, 12), np.uint8)
            Image.fromarray(array).save(root / name / f"{i}.png")
    return root


def test_a_bomb_in_a_folder_is_skipped_and_named_with_why(
    bomb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_folders(tmp_path / "pics", {"a": 5, "b": 5})
    (root / "a" / "bomb.png").write_bytes(bomb.read_bytes())
    folder = load_folder(f"folder:{root}")
    assert len(folder.train.labels) + len(folder.test.labels) == 10
    err = capsys.readouterr().err
    assert "skipped 1 of 11 files" in err and "a/bomb.png (13000x13000 pixels" in err


def test_16_bit_and_float_pixels_are_scaled_and_not_numbers_refused(tmp_path: Path) -> None:
    wide = np.full((8, 8), 65535 // 4, np.uint16)
    Image.fromarray(wide).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    with open_image(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
        gray = pixels(image, 1, (8, 8))
        rgb = pixels(image, 3, (8, 8))
    assert gray.mean() == pytest.approx(0.25, abs=1e-3)  # not clipped to 8 bits (1.0)
    assert rgb.shape == (3, 8, 8) and rgb.mean() == pytest.approx(0.25, abs=1e-3)
    floats = np.full((8, 8), 0.5, np.float32)
    floats[3, 3] = np.nan
    Image.fromarray(floats, mode="F").save(tmp_path / "nan.tiff")
    with pytest.raises(DataError, match=r"nan\.tiff: holds pixels that are not finite numbers"):
        load_image(tmp_path / "nan.tiff", (8, 8))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((10, 20), np.uint8)
    array[:, :10] = 255  # left half bright: stored landscape
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    image.save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=100)
    seen = load_image(tmp_path / "photo.jpg", (20, 10))[0].numpy()  # shown portrait
    assert seen[:10].mean() > 0.9 and seen[10:].mean() < 0.1  # the bright half on top


def test_an_empty_class_folder_is_refused_by_name(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "pics", {"cats": 4, "dogs": 4})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="class folder 'empty' holds no readable image"):
        load_folder(f"folder:{root}")
    (root / "empty").rmdir()
    (root / "everything").symlink_to("/")
    with pytest.raises(DataError, match="class folder 'everything' holds no readable image"):
        load_folder(f"folder:{root}")


@pytest.mark.e2e
def test_a_class_folder_whose_name_is_not_utf8_trains_and_is_drawn(tmp_path: Path) -> None:
    from cnnlab.report import write_report
    from cnnlab.training import TrainConfig, train

    root = class_folders(tmp_path / "pics", {"plain": 6}, mode="L")
    odd = os.fsdecode(b"caf\xe9")
    class_folders(root, {odd: 6}, mode="L")
    config = TrainConfig(
        dataset=f"folder:{root}",
        epochs=1,
        batch_size=4,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path / "run"),
        quiet=True,
    )
    run = train(config).run_dir
    assert json.loads((run / "model.json").read_text())["classes"] == ["caf\ufffd", "plain"]
    report = write_report(run)
    assert "caf\ufffd" in report.read_text(encoding="utf-8")


def test_pixels_that_are_not_numbers_are_never_classified() -> None:
    classifier = Classifier(
        create_model("lenet").eval(),
        {"classes": [str(i) for i in range(10)], "preprocessing": {"input_shape": [1, 28, 28]}},
    )
    for bad in (float("nan"), float("inf")):
        x = torch.full((28, 28), 0.5)
        x[0, 0] = bad
        with pytest.raises(DataError, match="not finite numbers"):
            classifier.predict(x)


def test_a_folder_too_large_to_decode_is_refused_naming_the_image_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = class_folders(tmp_path / "pics", {"a": 3, "b": 3})
    monkeypatch.setattr("cnnlab.data.folder.MAX_STORE", 10_000)  # bytes, as if 8 GB
    with pytest.raises(
        DataError, match=r"6 images of 1x64x64 would take .* choose a smaller --image-size"
    ):
        load_folder(f"folder:{root}", size=(64, 64))
