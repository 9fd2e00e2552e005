"""Training: the config, the loop, and saved models.

The names below load their module on first use: ``cnnlab.training.config`` alone (what
the command line needs to parse its flags) brings in neither the loop nor matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.lazy import lazy_names

if TYPE_CHECKING:
    from cnnlab.rundir import load_model, save_model
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.control import Diverged, Interrupted
    from cnnlab.training.metrics import accuracy, confusion_matrix, per_class_accuracy
    from cnnlab.training.outputs import TrainResult
    from cnnlab.training.run import Run
    from cnnlab.training.trainer import train

__getattr__ = lazy_names(
    "cnnlab.training",
    {
        "load_model": "cnnlab.rundir",
        "save_model": "cnnlab.rundir",
        "TrainConfig": "config",
        "Diverged": "control",
        "Interrupted": "control",
        "accuracy": "metrics",
        "confusion_matrix": "metrics",
        "per_class_accuracy": "metrics",
        "Run": "run",
        "TrainResult": "outputs",
        "train": "trainer",
    },
)

__all__ = [
    "Diverged",
    "Interrupted",
    "Run",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "confusion_matrix",
    "load_model",
    "per_class_accuracy",
    "save_model",
    "train",
]
