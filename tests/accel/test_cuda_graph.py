"""The graphed training step on CUDA (needs a CUDA device) against the eager loop."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.data import datasets as ds
from cnnlab.training import step, train
from tests.training.test_trainer import tiny_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_graph_equals_eager(
    tiny_dataset: tuple[ds.Dataset, Path],
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, directory = tiny_dataset
    # In float32 throughout (the graphs' TF32 off): the graph of 20 examples (4 per epoch)
    # and of the last 16 follow the eager loop up to rounding (the fused block sums in
    # another order than cuDNN).
    monkeypatch.setattr(step, "tf32_matmuls", contextlib.nullcontext)
    common = {"device": "cuda", "batch_size": 20, "epochs": 3, "backend": backend}
    graphed = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "g"), **common))
    eager = train(
        tiny_config(tmp_path, directory, out_dir=str(tmp_path / "e"), fast=False, **common)
    )
    for a, b in zip(graphed.history, eager.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_acc"] == b["test_acc"]
    weights_g, weights_e = (
        load_file(tmp_path / "g/model.safetensors"),
        load_file(tmp_path / "e/model.safetensors"),
    )
    for key, value in weights_e.items():
        torch.testing.assert_close(weights_g[key], value, rtol=1e-4, atol=1e-5)
    config = json.loads((tmp_path / "g/config.json").read_text())
    assert config["environment"]["device"].startswith("cuda")
