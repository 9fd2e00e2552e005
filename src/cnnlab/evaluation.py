"""A saved run evaluated on its test set: the one path behind ``cnnlab eval``, the
figures of ``cnnlab viz`` and the page of ``cnnlab report``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import Batches, ImageSet
from cnnlab.rundir import data_dir_of, load_model
from cnnlab.training.metrics import EVAL_BATCH, confusion_from, predict_proba


@dataclass
class Evaluation:
    """A trained model, its sidecar, its test split and its predictions on it."""

    model: nn.Module
    meta: dict[str, Any]
    test: ImageSet
    probs: torch.Tensor  # (N, classes) test-set probabilities, on the CPU

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def confusion(self) -> torch.Tensor:
        """(classes, classes) counts: row = true class, column = predicted."""
        labels = torch.from_numpy(self.test.labels)
        return confusion_from(labels, self.probs.argmax(dim=1), len(self.classes))


def evaluate_saved_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    trust_model_file: bool = False,
    progress: bool = False,
    offline: bool | None = None,
) -> Evaluation:
    """Load the model of ``run_dir`` and predict its dataset's test split, as the run did
    (with its test-time augmentation, if it used one). ``trust_model_file``: see
    :func:`~cnnlab.rundir.load_model`; ``progress``: a bar over the test set; ``offline``:
    never download its dataset (None: unless ``CNNLAB_OFFLINE`` says so)."""
    from cnnlab.data.folder import splits_of_run  # PIL: only when a saved run is evaluated

    model, meta = load_model(run_dir, device, trust_model_file)
    _, test, _, _ = splits_of_run(meta, data_dir_of(run_dir, data_dir), offline)
    batches = Batches(test, EVAL_BATCH, device)
    probs = predict_proba(model, batches, meta.get("tta", False), progress).cpu()
    return Evaluation(model, meta, test, probs)
