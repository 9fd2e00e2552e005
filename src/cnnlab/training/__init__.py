"""Training: the config, the loop, and saved models."""

from cnnlab.training.checkpoint import load_model, save_model
from cnnlab.training.config import TrainConfig
from cnnlab.training.metrics import accuracy, confusion_matrix, per_class_accuracy
from cnnlab.training.trainer import TrainResult, train, train_epoch, train_step

__all__ = [
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "confusion_matrix",
    "load_model",
    "per_class_accuracy",
    "save_model",
    "train",
    "train_epoch",
    "train_step",
]
