"""The run directory: a saved model that is damaged is refused with what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.data import datasets as ds
from cnnlab.errors import CheckpointError
from cnnlab.training import load_model, train
from tests.training.test_trainer import tiny_config

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def test_load_model_refuses_a_damaged_saved_model(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    run = train(tiny_config(tmp_path, directory, epochs=1)).run_dir
    weights = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(run)
    (run / "model.safetensors").write_bytes(weights)
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(
        json.dumps({**meta, "model_options": {"pool": "max", "num_classes": 3}})
    )
    with pytest.raises(
        CheckpointError, match=r"weights do not fit the model model\.json describes"
    ):
        load_model(run)
    (run / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        load_model(run)
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_model(tmp_path / "nowhere")
