"""Evaluation metrics over a whole split."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data import Batches


@torch.inference_mode()
def confusion_matrix(model: nn.Module, batches: Batches, num_classes: int) -> torch.Tensor:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=batches.images.device)
    for x, y in batches:
        predicted = model(x).argmax(dim=1)
        counts += torch.bincount(y * num_classes + predicted, minlength=num_classes**2)
    return counts.view(num_classes, num_classes).cpu()


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
