"""Kernels and feature maps (viz.features) of a model, headless."""

import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.viz import conv_activations, plot_activation_pair, plot_feature_maps, plot_kernels


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


def test_the_feature_maps_of_a_model_that_is_not_a_sequential() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 8 * 8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).relu().flatten(1))

    layers = conv_activations(Net(), torch.rand(1, 1, 8, 8))
    assert [(name, tuple(maps.shape)) for name, maps in layers] == [("conv1", (3, 8, 8))]
    plot_feature_maps(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.rand(1, 8, 8))


def test_run_comparison_plots_the_accuracy_runs_are_chosen_by() -> None:
    from cnnlab.viz import plot_run_comparison

    rows = [{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5, "val_acc": 0.25}]
    figure = plot_run_comparison({"a": rows}, "val_acc")
    assert figure.axes[1].get_ylabel() == "val acc"
    assert list(figure.axes[1].lines[0].get_ydata()) == [0.25]


def test_a_deep_network_shows_eight_of_its_layers_evenly_spaced() -> None:
    from cnnlab.viz.features import MAX_LAYERS

    torch.manual_seed(0)
    deep = nn.Sequential(
        *(m for _ in range(30) for m in (nn.Conv2d(1, 1, 3, padding=1), nn.ReLU()))
    )
    image = torch.rand(1, 8, 8)
    for figure in (
        plot_feature_maps(deep, image),
        plot_activation_pair(deep, [image, image], ["a", "b"]),
    ):
        titles = [ax.get_title(loc="left") for ax in figure.get_axes() if ax.get_title(loc="left")]
        layers = [t.split()[0] for t in titles]
        assert len(set(layers)) == MAX_LAYERS, titles
        assert layers[0] == "1/30" and layers[MAX_LAYERS - 1] == "30/30"
