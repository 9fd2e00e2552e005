"""Training: the config, the loop, and saved models."""

from cnnlab.training.checkpoint import load_model, save_model
from cnnlab.training.config import TrainConfig
from cnnlab.training.metrics import accuracy, confusion_matrix, per_class_accuracy
from cnnlab.training.trainer import Diverged, Interrupted, Run, TrainResult, train

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
