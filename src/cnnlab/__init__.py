"""cnnlab: the convolutional-network chapter of Dive into Deep Learning as real software."""

__version__ = "0.1.0"

from cnnlab.data import load_dataset
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.models import create_model, list_models
from cnnlab.training import TrainConfig, TrainResult, load_model, train

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
    "train",
]
