"""Every figure function on tiny synthetic inputs, with the headless Agg canvas."""

import numpy as np
import torch

from cnnlab.models import create_model
from cnnlab.viz import (
    LiveCurves,
    conv_activations,
    in_notebook,
    plot_activation_pair,
    plot_confusion,
    plot_feature_maps,
    plot_kernels,
    plot_mistakes,
    plot_per_class_accuracy,
)

CLASSES = [f"c{i}" for i in range(10)]


def test_confusion_counts_and_normalised() -> None:
    confusion = np.arange(100).reshape(10, 10)
    counts = plot_confusion(confusion, CLASSES)
    normalised = plot_confusion(confusion, CLASSES, normalize=True)
    ax = counts.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert ax.texts[11].get_text() == "11"
    assert normalised.axes[0].texts[11].get_text() == f"{11 / sum(range(10, 20)):.2f}"
    assert "row-normalised" in normalised.axes[0].get_title()


def test_per_class_accuracy() -> None:
    fig = plot_per_class_accuracy(np.linspace(0, 1, 10), CLASSES)
    assert len(fig.axes[0].patches) == 10 and fig.axes[0].texts[-1].get_text() == "1.000"


def test_mistakes_are_the_most_confident_wrong_ones() -> None:
    images = np.zeros((5, 28, 28), np.uint8)
    labels = np.array([0, 1, 2, 3, 4])
    probs = np.full((5, 10), 0.01)
    probs[0, 0] = 0.9  # right
    probs[1, 5], probs[2, 6], probs[3, 7], probs[4, 4] = 0.6, 0.95, 0.7, 0.99
    fig = plot_mistakes(images, labels, probs, CLASSES, count=8, columns=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "true: c2\npred: c6 0.95",
        "true: c3\npred: c7 0.70",
        "true: c1\npred: c5 0.60",
    ]


def test_kernels_and_feature_maps() -> None:
    torch.manual_seed(0)
    model = create_model("lenet")
    kernels = plot_kernels(model[0].weight)
    assert len(kernels.axes) == 6 and len(kernels.axes[0].images) == 1
    layers = conv_activations(model, torch.rand(1, 1, 28, 28))
    assert [(n, tuple(t.shape)) for n, t in layers] == [
        ("conv1 + Sigmoid", (6, 28, 28)),
        ("conv2 + Sigmoid", (16, 10, 10)),
    ]
    maps = plot_feature_maps(model, torch.rand(1, 28, 28), title="x")
    assert sum(len(ax.images) for ax in maps.axes) == 1 + 6 + 16
    pair = plot_activation_pair(model, [torch.rand(1, 28, 28)] * 2, ["a", "b"])
    assert sum(len(ax.images) for ax in pair.axes) == 2 * (1 + 6 + 8)


def test_live_curves_only_in_a_notebook(displayed: list[bytes]) -> None:
    assert not in_notebook()  # pytest is no Jupyter kernel
    live = LiveCurves()
    points = [{"x": 0.5, "train_loss": 1.0, "train_acc": 0.5}]
    live.update(points, [])
    live.update(points, [{"epoch": 1, "test_acc": 0.6}])
    assert len(displayed) == 2 and all(png[:4] == b"\x89PNG" for png in displayed)
