"""The book's training figure: train loss, train accuracy and test accuracy against epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure


def plot_curves(points: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> Figure:
    """Plot intra-epoch train loss/accuracy ``points`` and per-epoch test accuracy.

    ``points`` have keys ``x`` (fractional epoch), ``train_loss`` and ``train_acc``;
    ``epochs`` have ``epoch`` and ``test_acc``. No pyplot: the caller's matplotlib
    backend and global state are left alone.

    >>> fig = plot_curves([{"x": 0.5, "train_loss": 2.0, "train_acc": 0.3}],
    ...                   [{"epoch": 1, "test_acc": 0.4}])
    >>> len(fig.axes[0].lines)
    3
    """
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    xs = [p["x"] for p in points]
    ax.plot(xs, [p["train_loss"] for p in points], "-", label="train loss")
    ax.plot(xs, [p["train_acc"] for p in points], "m--", label="train acc")
    ax.plot([e["epoch"] for e in epochs], [e["test_acc"] for e in epochs], "g-.", label="test acc")
    ax.set_xlabel("epoch")
    last = max([*xs, *(e["epoch"] for e in epochs), 1])
    ax.set_xlim(1 if last > 1 else 0, last)
    ax.grid(True)
    ax.legend()
    return fig
