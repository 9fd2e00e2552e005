"""Training: the config, the loop, and saved models.

The names below load their module on first use: ``cnnlab.training.config`` alone (what
the command line needs to parse its flags) brings in neither the loop nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.rundir import load_model, save_model
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.control import Diverged, Interrupted
    from cnnlab.training.metrics import accuracy, confusion_matrix, per_class_accuracy
    from cnnlab.training.trainer import Run, TrainResult, train

_LAZY = {
    "load_model": "cnnlab.rundir", "save_model": "cnnlab.rundir", "TrainConfig": "config",
    "Diverged": "control", "Interrupted": "control", "accuracy": "metrics",
    "confusion_matrix": "metrics", "per_class_accuracy": "metrics", "Run": "trainer",
    "TrainResult": "trainer", "train": "trainer",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name]
        return getattr(importlib.import_module(module if "." in module else
                                               f"cnnlab.training.{module}"), name)  # fmt: skip
    raise AttributeError(f"module 'cnnlab.training' has no attribute {name!r}")


__all__ = [
    "Diverged", "Interrupted", "Run", "TrainConfig", "TrainResult", "accuracy",
    "confusion_matrix", "load_model", "per_class_accuracy", "save_model", "train",
]  # fmt: skip
