"""Exporting a trained model: ONNX checked in onnxruntime, TorchScript reloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.export import export
from cnnlab.rundir import load_model

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def test_onnx_matches_pytorch_and_carries_its_preprocessing(run: tuple[Path, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir, data = run
    checked = export(run_dir, "onnx", run_dir / "m.onnx", str(data))
    assert checked is not None and checked[0] < 1e-5 and checked[1] == 40  # the tiny test split
    props = {p.key: p.value for p in onnx.load(str(run_dir / "m.onnx")).metadata_props}
    assert json.loads(props["classes"])[0] == "class0" and "pixels / 255" in props["input"]
    session = onnxruntime.InferenceSession(str(run_dir / "m.onnx"))
    x = torch.rand(5, 1, 28, 28)  # another batch size than the exported example
    model, _ = load_model(run_dir)
    (logits,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_torchscript_reloads_with_its_metadata(
    run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, data = run
    assert (
        main(
            [
                "export",
                str(run_dir),
                "--format",
                "torchscript",
                "-o",
                str(tmp_path / "m.pt"),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    extra = {"cnnlab.json": ""}
    loaded = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["cnnlab.json"])["cnnlab_model"] == "lenet"
    model, _ = load_model(run_dir)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x).detach())


def test_unknown_format_is_refused(run: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown format 'tflite'"):
        export(run[0], "tflite", run[0] / "m")


@pytest.fixture
def run(tiny_run: tuple[Path, Path]) -> tuple[Path, Path]:
    return tiny_run


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_onto_a_full_disk_fails_in_one_line_and_leaves_no_file(
    fmt: str, run: tuple[Path, Path], tmp_path: Path
) -> None:
    """A 64 KiB tmpfs in a private mount namespace, too small for the model."""
    import os
    import shutil
    import subprocess
    import sys

    if fmt == "onnx":
        pytest.importorskip("onnx")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small filesystem")
    run_dir, data = run
    full = tmp_path / "full"
    full.mkdir()
    export_cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "export",
        str(run_dir),
        "--format",
        fmt,
        "-o",
        str(full / "model.bin"),
        "--data-dir",
        str(data),
    ]
    # export, then list what is left on the small filesystem, inside the same namespace
    script = (
        f'mount -t tmpfs -o size=64k tmpfs {full} || exit 99; "$@"; status=$?; '
        f"echo LISTING; ls -A {full}; exit $status"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *export_cmd],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    assert done.stdout.split("LISTING\n")[1] == ""  # no model file, no temporary file


def test_export_prints_no_foreign_warning_and_the_real_image_count(
    run: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    import warnings

    run_dir, data = run
    for fmt in ("onnx", "torchscript"):
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # as outside pytest, which shows them itself
            assert main(["export", str(run_dir), "--format", fmt, "--data-dir", str(data)]) == 0
        out, err = capfd.readouterr()
        assert err == "", err
        if fmt == "onnx":
            assert "onnxruntime against PyTorch on 40 test images" in out
