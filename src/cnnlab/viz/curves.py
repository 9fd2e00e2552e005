"""The book's training figure: train loss, train accuracy and test accuracy against epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def plot_run_comparison(
    runs: Mapping[str, Sequence[dict[str, Any]]], accuracy: str = "test_acc"
) -> Figure:
    """Several runs overlaid: train loss and an accuracy per epoch (``test_acc``, or
    ``val_acc``: the one runs are chosen by), one line per run.

    >>> fig = plot_run_comparison({"a": [{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5}]})
    >>> [len(ax.lines) for ax in fig.axes]
    [1, 1]
    """
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for name, epochs in runs.items():
        xs = [e["epoch"] for e in epochs]
        loss_ax.plot(xs, [e["train_loss"] for e in epochs], marker=".", label=name)
        acc_ax.plot(xs, [e.get(accuracy, float("nan")) for e in epochs], marker=".", label=name)
    for ax, label in ((loss_ax, "train loss"), (acc_ax, accuracy.replace("_", " "))):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True)
    acc_ax.legend(fontsize=8)
    return fig
