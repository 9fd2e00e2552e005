"""Predicting image files: each file on its own, any bit depth, a sidecar checked first."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save, save_file

from cnnlab.cli import main
from cnnlab.errors import CheckpointError
from cnnlab.predict import load_image
from cnnlab.rundir import load_model

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    gray = np.full((28, 28), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(gray).save(tmp_path / "grey16.png")
    pixels = load_image(tmp_path / "grey16.png", (28, 28))
    assert pixels.shape == (1, 28, 28)
    assert pixels.mean().item() == pytest.approx(0.5, abs=1e-3)  # not 1.0 (clipped)
    Image.fromarray(np.full((28, 28), 0.25, np.float32), mode="F").save(tmp_path / "f.tiff")
    assert load_image(tmp_path / "f.tiff", (28, 28)).mean().item() == pytest.approx(0.25)
    Image.fromarray(np.full((28, 28), 51, np.uint8)).save(tmp_path / "grey8.png")
    assert load_image(tmp_path / "grey8.png", (28, 28)).mean().item() == pytest.approx(0.2)


def test_each_file_is_predicted_on_its_own(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(np.zeros((60, 60), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "ok.png")
    monkeypatch.setattr("cnnlab.data.images.MAX_PIXELS", 1000)  # 60x60 is then over budget
    code = main(["predict", str(run), str(tmp_path / "huge.png"), str(tmp_path / "ok.png")])
    captured = capsys.readouterr()
    assert code == 1
    assert "huge.png: 60x60 pixels, more than the 1,000 cnnlab decodes" in captured.err
    assert captured.out.startswith(str(tmp_path / "ok.png"))


def test_a_sidecar_that_does_not_fit_the_model_is_refused(run: Path) -> None:
    sidecar = run / "model.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "classes": ["only one"]}))
    with pytest.raises(CheckpointError, match="names 1 classes but the model has 10 outputs"):
        load_model(run)
    sidecar.write_text(json.dumps({**meta, "preprocessing": {"input_shape": "28x28"}}))
    with pytest.raises(CheckpointError, match="input_shape must be"):
        load_model(run)


def test_non_finite_weights_are_refused(run: Path) -> None:
    weights = load_file(str(run / "model.safetensors"))
    next(iter(weights.values()))[0] = float("nan")
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not match the SHA-256 in model\.json"):
        load_model(run)  # an edited file
    meta = json.loads((run / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not finite numbers"):
        load_model(run)  # NaN weights with a matching digest
    assert torch.isnan(next(iter(load_file(str(run / "model.safetensors")).values()))).any()


@pytest.fixture
def run(tiny_run: tuple[Path, Path]) -> Path:
    return tiny_run[0]


def test_a_pipe_a_device_and_a_directory_are_refused_at_once(tmp_path: Path) -> None:
    """Opening a named pipe waited forever for a writer; each is now one line."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "a_fifo"
    os.mkfifo(fifo)
    program = (
        "import sys; from pathlib import Path; from cnnlab.errors import DataError; "
        "from cnnlab.predict import load_image\n"
        "for p in sys.argv[1:]:\n"
        "    try: load_image(Path(p), (28, 28))\n"
        "    except DataError as e: print(e)\n"
    )  # in a process of its own: the old behaviour never returns
    done = subprocess.run(
        [sys.executable, "-c", program, str(fifo), "/dev/zero", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == [
        f"{fifo}: not a regular file (a pipe, a device or a socket); give the path of an image file",
        "/dev/zero: not a regular file (a pipe, a device or a socket); give the path of an image file",
        f"{tmp_path}: is a directory; give the image files in it",
    ], done.stderr


def test_a_run_without_a_model_yet_says_so(tmp_path: Path) -> None:
    """A run in its first epoch (config.json, no model.json) was 'not a run directory?'."""
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        CheckpointError,
        match=f"{tmp_path} has no trained model yet: the run is still training, or stopped before it finished",
    ):
        load_model(tmp_path)


def test_a_model_being_published_is_read_again_not_called_changed(
    run: Path, tmp_path: Path
) -> None:
    """New weights land a moment before their sidecar: read once more, not 'changed'."""
    import shutil
    import threading

    copy = tmp_path / "publishing"
    shutil.copytree(run, copy)
    state = {k: v + 1 for k, v in load_file(str(copy / "model.safetensors")).items()}
    new_blob = save(state)
    meta = json.loads((copy / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(new_blob).hexdigest()
    (copy / "model.safetensors").write_bytes(new_blob)  # the weights first, as save_model
    timer = threading.Timer(0.2, lambda: (copy / "model.json").write_text(json.dumps(meta)))
    timer.start()
    model, loaded = load_model(copy)
    timer.join()
    assert loaded["weights_sha256"] == meta["weights_sha256"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_eval_finds_an_idx_runs_data_where_it_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "data", n_train=32, n_test=16)
    assert (
        main(
            [
                "train",
                "--dataset",
                "idx",
                "--data-dir",
                str(tmp_path / "data"),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--quiet",
                "--out-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 0  # no --data-dir: the run's own
    assert "test acc" in capsys.readouterr().out


def test_an_animation_and_a_squeezed_image_are_called_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger("cnnlab"), "propagate", True)
    frames = [Image.fromarray(np.full((28, 28), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.zeros((10, 4000), np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "fine.png")
    for name in ("anim.gif", "wide.png", "fine.png"):
        load_image(tmp_path / name, (28, 28))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"{tmp_path / 'anim.gif'}: 3 frames; the first is classified",
        f"{tmp_path / 'wide.png'}: 4000x10 is squeezed into 28x28 (its proportions are not kept); "
        "crop it around the object for a fairer prediction",
    ]


def test_load_predicts_tensors_arrays_pil_images_and_files_alike(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnlab
    from cnnlab.data import load_dataset
    from cnnlab.errors import DataError

    run_dir, data_dir = tiny_run
    _, test = load_dataset("tiny", data_dir)
    pixels = test.images[:5]  # (5, 28, 28) uint8
    classifier = cnnlab.load(run_dir)
    batch = classifier.predict(torch.from_numpy(pixels).float().div(255)[:, None])
    assert len(batch) == 5 and all(p.ranked[0] == (p.label, p.probability) for p in batch)
    assert len(batch[0].ranked) == 10 and sum(q for _, q in batch[0].ranked) == pytest.approx(1)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image, mode="L").save(paths[-1])
    alike = [
        classifier.predict(pixels),  # a uint8 numpy batch
        classifier.predict([Image.open(p) for p in paths]),
        classifier.predict([str(p) for p in paths]),
        classifier.predict(torch.from_numpy(pixels)),
    ]
    for other in alike:
        assert [p.label for p in other] == [p.label for p in batch]
        assert np.allclose(
            [p.probability for p in other], [p.probability for p in batch], atol=1e-6
        )
    # `cnnlab predict` says the same of the same images saved as PNG
    assert main(["predict", str(run_dir), *map(str, paths), "--top", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = [
        f"{path}: " + ", ".join(f"{name} {q:.3f}" for name, q in p.ranked[:2])
        for path, p in zip(paths, batch, strict=True)
    ]
    assert printed == expected
    for bad in (torch.zeros(2, 3, 28, 28), np.zeros((2, 2, 2, 2, 2)), 7):
        with pytest.raises(DataError, match="cannot classify"):
            classifier.predict(bad)
    small = classifier.predict(torch.from_numpy(pixels).float().div(255)[:, None, ::2, ::2])
    assert len(small) == 5  # another size is resized to the model's input
