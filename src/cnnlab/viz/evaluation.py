"""Figures of a model's test-set behaviour (confusion matrix, per-class accuracy,
mistakes) and of what it is fed (a batch as the network sees it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import torch


def plot_confusion(
    confusion: np.ndarray, classes: Sequence[str], normalize: bool = False
) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted), counts or row-normalised.

    >>> fig = plot_confusion(np.array([[3, 1], [0, 2]]), ["a", "b"], normalize=True)
    >>> fig.axes[0].get_ylabel()
    'true class'
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    # at least wide enough for the title, however few the classes
    fig = Figure(figsize=(max(4.2, 1.2 + 0.55 * n), max(3.2, 0.8 + 0.5 * n)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix\n" + ("(row-normalised)" if normalize else "(counts)"))
    threshold = matrix.max() / 2
    for i in range(n):
        for j in range(n):
            text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    return fig


def plot_per_class_accuracy(accuracy: np.ndarray, classes: Sequence[str]) -> Figure:
    """Horizontal bars: the fraction of each class's test images classified correctly.

    >>> len(plot_per_class_accuracy(np.array([0.5, 0.9]), ["a", "b"]).axes[0].patches)
    2
    """
    fig = Figure(figsize=(5.5, 0.6 + 0.3 * len(classes)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(classes))
    ax.barh(y, accuracy, color="tab:blue")
    ax.set_yticks(y, classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("test accuracy")
    for i, value in enumerate(accuracy):
        ax.text(value + 0.01, i, f"{value:.3f}", va="center", fontsize=8)
    ax.grid(True, axis="x", alpha=0.4)
    return fig


def plot_mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    count: int = 24,
    columns: int = 8,
) -> Figure:
    """The ``count`` test images the model got wrong with the highest confidence.

    ``images`` (N, H, W) or (N, 3, H, W) uint8, ``labels`` (N,), ``probs`` (N, classes).
    Each tile shows the true label, the prediction and its probability.
    """
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]
    rows = max(1, -(-len(order) // columns))
    fig = Figure(figsize=(1.45 * columns, 1.75 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order, strict=False):
        if images[i].ndim == 3:  # (3, H, W) RGB
            ax.imshow(images[i].transpose(1, 2, 0))
        else:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        guess = predicted[i]
        ax.set_title(
            f"true: {classes[labels[i]]}\npred: {classes[guess]} {probs[i, guess]:.2f}", fontsize=7
        )
    if len(order) == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("most confidently wrong test images", fontsize=10)
    return fig


def plot_examples(
    images: torch.Tensor,
    labels: Sequence[int],
    classes: Sequence[str],
    columns: int = 8,
    title: str = "",
) -> Figure:
    """A grid of images as a network sees them, each titled with its label (fastai's
    ``show_batch``): ``images`` (N, C, H, W) floats in [0, 1], C 1 or 3."""
    rows = max(1, -(-len(labels) // columns))
    fig = Figure(figsize=(1.45 * columns, 1.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        pixels = image.clamp(0, 1).cpu().numpy()
        if pixels.shape[0] == 3:
            ax.imshow(pixels.transpose(1, 2, 0))
        else:
            ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(classes[int(label)], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
