from typing import Any

import pytest
import torch
from torch import nn

from cnnlab import layers
from cnnlab.models import create_model, summarize
from cnnlab.ops import corr2d, vertical_edge
from tests.ops.helpers import assert_matches_torch

CONV_CASES: list[dict[str, Any]] = [
    {"in_channels": 1, "out_channels": 6, "kernel_size": 5, "padding": 2},
    {"in_channels": 3, "out_channels": 2, "kernel_size": (2, 3), "stride": (2, 1), "bias": False},
    {"in_channels": 2, "out_channels": 4, "kernel_size": 4, "padding": "same", "dilation": 2},
    {"in_channels": 2, "out_channels": 3, "kernel_size": 2, "padding": "same"},  # even: odd total
    {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": "valid"},
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kwargs", CONV_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_is_a_drop_in_for_torch(kwargs: dict[str, Any], dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    theirs = nn.Conv2d(**kwargs, dtype=dtype)
    torch.manual_seed(0)
    ours = layers.Conv2d(**kwargs, dtype=dtype)
    # Same initialisation from the same seed, same state_dict keys and shapes.
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    x = torch.randn(2, kwargs["in_channels"], 9, 8, dtype=dtype)
    assert_matches_torch(ours, theirs, [x])
    # Parameter gradients too.
    ours.zero_grad()
    theirs.zero_grad()
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": (2, 3), "stride": 1, "ceil_mode": True},
    ],
)
def test_pooling_layers_are_drop_ins(kwargs: dict[str, Any]) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    assert_matches_torch(layers.MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs), [x])
    assert_matches_torch(layers.AvgPool2d(**kwargs), nn.AvgPool2d(**kwargs), [x])


def test_unsupported_options_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="groups=1 and padding_mode='zeros' only, got groups=2"):
        layers.Conv2d(2, 2, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        layers.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="kernel_size, stride and dilation must be positive"):
        layers.Conv2d(1, 1, (0, 3))
    with pytest.raises(ValueError, match="does not implement dilation=2"):
        layers.MaxPool2d(2, dilation=2)
    with pytest.raises(ValueError, match="does not implement count_include_pad=False"):
        layers.AvgPool2d(2, count_include_pad=False)


def test_the_books_conv2d_learns_an_edge() -> None:
    x = torch.ones(6, 8)
    x[:, 2:6] = 0
    y = corr2d(x, vertical_edge())
    torch.manual_seed(0)
    layer = layers.Conv2D((1, 2))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)  # with a bias, 0.03 diverges
    for _ in range(300):
        optimizer.zero_grad()
        ((layer(x) - y) ** 2).sum().backward()
        optimizer.step()
    assert ((layer(x) - y) ** 2).sum() < 1e-3


def test_scratch_lenet_equals_torch_lenet() -> None:
    torch.manual_seed(0)
    reference = create_model("lenet", activation="relu", pool="max")
    scratch = create_model("lenet", activation="relu", pool="max", backend="scratch")
    scratch.load_state_dict(reference.state_dict())  # the weights are interchangeable
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64)
    assert_matches_torch(scratch.double(), reference.double(), [x])
    rows = summarize(create_model("lenet", backend="scratch"))
    assert sum(r.params for r in rows) == 61_706 and sum(r.macs for r in rows) == 416_520
