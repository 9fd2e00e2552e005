"""cnnlab: the convolutional-network chapter of Dive into Deep Learning as real software.

The names below load their module on first use, so ``import cnnlab.ops`` (or
``cnnlab.layers``) brings in neither the trainer nor matplotlib nor tqdm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.lazy import lazy_names
from cnnlab.version import __version__

if TYPE_CHECKING:
    from cnnlab.data import load_dataset
    from cnnlab.models import create_model, list_models
    from cnnlab.predict import load
    from cnnlab.training import TrainConfig, TrainResult, load_model, train
    from cnnlab.training.lr_find import lr_find

__getattr__ = lazy_names(
    "cnnlab",
    {
        "load_dataset": "cnnlab.data",
        "create_model": "cnnlab.models",
        "list_models": "cnnlab.models",
        "load": "cnnlab.predict",
        "TrainConfig": "cnnlab.training",
        "TrainResult": "cnnlab.training",
        "load_model": "cnnlab.training",
        "lr_find": "cnnlab.training.lr_find",
        "train": "cnnlab.training",
    },
)

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
    "load",
    "load_dataset",
    "load_model",
    "lr_find",
    "train",
]
