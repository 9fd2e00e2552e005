"""LeNet-5 as the book builds it (d2l, section "Convolutional Neural Networks (LeNet)")."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from cnnlab import layers
from cnnlab.errors import ConfigError
from cnnlab.models.registry import register_model
from cnnlab.ops import Layer, trace

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
# Layer classes per backend: torch's own, or cnnlab.layers (built on cnnlab.ops) with the
# same constructors and state_dict keys, so either backend loads the other's weights.
BACKENDS: dict[str, dict[str, type[nn.Module]]] = {
    "torch": {"conv": nn.Conv2d, "avg": nn.AvgPool2d, "max": nn.MaxPool2d},
    "scratch": {"conv": layers.Conv2d, "avg": layers.AvgPool2d, "max": layers.MaxPool2d},
}


def _choice(kind: str, value: str, table: dict[str, Any]) -> Any:
    if value not in table:
        raise ConfigError(f"unknown {kind} {value!r}; choose one of: {', '.join(table)}")
    return table[value]


@register_model("lenet")
def lenet(
    activation: str = "sigmoid",
    pool: str = "avg",
    num_classes: int = 10,
    backend: str = "torch",
    kernel: int = 5,
    channels: tuple[int, ...] = (6, 16),
    dense: tuple[int, ...] = (120, 84),
    batch_norm: bool = False,
    dropout: float = 0.0,
    pad_all: bool = False,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
) -> nn.Sequential:
    """The book's LeNet (LeCun et al., 1998), sigmoid and average pooling. It takes
    ``in_channels`` x ``image_size`` inputs (the dataset's: 1x28x28 for Fashion-MNIST).

    Book shapes: 1x28x28 -> 6x28x28 -> 6x14x14 -> 16x10x10 -> 16x5x5 -> 400 -> 120 -> 84 ->
    classes. The options cover the chapter's exercise: activation, pooling kind, kernel size,
    conv blocks (one per entry of ``channels``; the first pads to keep its size, every one
    with ``pad_all``), dense widths, batch normalisation after each conv and hidden dense
    layer (as the book's batch-norm chapter places it), dropout after each hidden dense layer.
    ``backend="scratch"`` builds the conv and pooling layers from ``cnnlab.layers``.
    """
    act = _choice("activation", activation, ACTIVATIONS)
    kinds = _choice("backend", backend, BACKENDS)
    conv = kinds["conv"]
    pool_cls = _choice("pool", pool, {name: kinds[name] for name in ("avg", "max")})
    if kernel < 1 or not channels or min(channels) < 1 or min(dense, default=1) < 1:
        raise ConfigError(
            f"kernel, channels and dense widths must be positive (and channels not empty), "
            f"got kernel={kernel}, channels={channels}, dense={dense}"
        )
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    modules: list[nn.Module] = []
    stack = []  # the conv and pooling layers, for the shape arithmetic
    for i, (c_in, c_out) in enumerate(zip((in_channels, *channels), channels, strict=False)):
        pad = kernel // 2 if i == 0 or pad_all else 0
        modules.append(conv(c_in, c_out, kernel_size=kernel, padding=pad))
        modules += [nn.BatchNorm2d(c_out)] if batch_norm else []
        modules += [act(), pool_cls(kernel_size=2, stride=2)]
        stack += [Layer("conv", (kernel,) * 2, padding=(pad,) * 2), Layer("pool", (2, 2), (2, 2))]
    try:
        h, w = trace((image_size[0], image_size[1]), stack)[-1].size
    except ValueError:
        raise ConfigError(
            f"{len(channels)} conv blocks with kernel {kernel} shrink a "
            f"{image_size[0]}x{image_size[1]} image to nothing; use a smaller kernel or fewer "
            "blocks"
        ) from None
    modules.append(nn.Flatten())
    width = channels[-1] * h * w
    for d in dense:
        modules.append(nn.Linear(width, d))
        modules += [nn.BatchNorm1d(d)] if batch_norm else []
        modules.append(act())
        modules += [nn.Dropout(dropout)] if dropout else []
        width = d
    modules.append(nn.Linear(width, num_classes))
    return nn.Sequential(*modules)


# The exercise's variants, each the book's LeNet with one or two changes.
register_model("lenet-max")(partial(lenet, pool="max"))
register_model("lenet-relu")(partial(lenet, activation="relu"))
register_model("lenet-relu-max")(partial(lenet, activation="relu", pool="max"))
register_model("lenet-bn")(partial(lenet, batch_norm=True))
