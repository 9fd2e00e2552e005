"""cnnlab: the convolutional-network chapter of Dive into Deep Learning as real software.

The names below load their module on first use, so ``import cnnlab.ops`` (or
``cnnlab.layers``) brings in neither the trainer nor matplotlib nor tqdm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cnnlab.data import load_dataset
    from cnnlab.models import create_model, list_models
    from cnnlab.training import TrainConfig, TrainResult, load_model, train
    from cnnlab.training.lr_find import lr_find

_LAZY = {
    "load_dataset": "cnnlab.data",
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "TrainConfig": "cnnlab.training",
    "TrainResult": "cnnlab.training",
    "load_model": "cnnlab.training",
    "lr_find": "cnnlab.training.lr_find",
    "train": "cnnlab.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "CnnlabError",
    "ConfigError",
    "DataError",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "create_model",
    "list_models",
    "load_dataset",
    "load_model",
    "lr_find",
    "train",
]
