"""Training: the config, the loop, and saved models."""

from cnnlab.training.checkpoint import load_model, save_model
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import TrainResult, evaluate, train, train_epoch, train_step

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_model",
    "save_model",
    "train",
    "train_epoch",
    "train_step",
]
