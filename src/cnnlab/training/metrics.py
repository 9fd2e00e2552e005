"""Evaluation metrics over a whole split."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.data import Batches

EVAL_BATCH = 2000  # examples per evaluation batch: larger than training, same result


def class_probabilities(model: nn.Module, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Softmax of ``model`` on the batch ``x`` (B, C, H, W); with ``tta`` (test-time
    augmentation), the mean of the probabilities of each image and its left-right mirror."""
    p: torch.Tensor = model(x).softmax(dim=1)
    return (p + model(x.flip(-1)).softmax(dim=1)) / 2 if tta else p


@torch.inference_mode()
def predict_proba(
    model: nn.Module, batches: Batches, tta: bool = False, progress: bool = False
) -> torch.Tensor:
    """Class probabilities (N, classes) for every example of ``batches``, in order;
    ``progress``: a bar (for a terminal) over the batches."""
    from tqdm import tqdm

    model.eval()
    shown = tqdm(batches, desc="test images", unit="batch", leave=False, disable=not progress)
    return torch.cat([class_probabilities(model, x, tta) for x, _ in shown])


def confusion_from(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (num_classes, num_classes): row = true class, column = predicted class.

    >>> confusion_from(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    flat = labels.to(torch.int64) * num_classes + predicted.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes).cpu()


def confusion_matrix(
    model: nn.Module, batches: Batches, num_classes: int, tta: bool = False
) -> torch.Tensor:
    """The confusion matrix of ``model`` on ``batches`` (``tta``: see :func:`predict_proba`)."""
    predicted = predict_proba(model, batches, tta).argmax(dim=1)
    return confusion_from(batches.labels, predicted, num_classes)


def accuracy(confusion: torch.Tensor) -> float:
    """Fraction of all examples predicted correctly.

    >>> accuracy(torch.tensor([[3, 1], [0, 2]]))
    0.8333333333333334
    """
    return confusion.diag().sum().item() / max(1, confusion.sum().item())


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Fraction of each true class predicted correctly.

    >>> per_class_accuracy(torch.tensor([[3, 1], [0, 2]])).tolist()
    [0.75, 1.0]
    """
    return confusion.diag().double() / confusion.sum(dim=1).clamp(min=1).double()


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch (1-based) of the highest validation accuracy (the first, on a tie)."""
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return best + 1
