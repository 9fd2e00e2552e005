"""A run's evaluation figures (viz.evaluation) on tiny synthetic inputs, headless."""

import numpy as np

from cnnlab.viz import plot_confusion, plot_mistakes, plot_per_class_accuracy

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
