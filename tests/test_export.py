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


def test_onnx_matches_pytorch_and_carries_its_preprocessing(run: tuple[Path, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir, data = run
    difference = export(run_dir, "onnx", run_dir / "m.onnx", str(data))
    assert difference is not None and difference < 1e-5
    props = {p.key: p.value for p in onnx.load(str(run_dir / "m.onnx")).metadata_props}
    assert json.loads(props["classes"])[0] == "class0" and "pixels / 255" in props["input"]
    session = onnxruntime.InferenceSession(str(run_dir / "m.onnx"))
    x = torch.rand(5, 1, 28, 28)  # another batch size than the exported example
    model, _ = load_model(run_dir)
    (logits,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_torchscript_reloads_with_its_metadata(run: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run_dir, data = run
    assert main(["export", str(run_dir), "--format", "torchscript", "-o", str(tmp_path / "m.pt"),
                 "--data-dir", str(data)]) == 0  # fmt: skip
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
