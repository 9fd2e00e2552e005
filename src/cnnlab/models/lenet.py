"""LeNet-5 as the book builds it (d2l, section "Convolutional Neural Networks (LeNet)")."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab import layers
from cnnlab.errors import ConfigError
from cnnlab.models.registry import register_model

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
    activation: str = "sigmoid", pool: str = "avg", num_classes: int = 10, backend: str = "torch"
) -> nn.Sequential:
    """The book's LeNet for 1x28x28 inputs: two conv blocks, three dense layers.

    Shapes: 1x28x28 -> 6x28x28 -> 6x14x14 -> 16x10x10 -> 16x5x5 -> 400 -> 120 -> 84 -> classes.
    ``backend="scratch"`` builds the conv and pooling layers from ``cnnlab.layers``.
    """
    act = _choice("activation", activation, ACTIVATIONS)
    kinds = _choice("backend", backend, BACKENDS)
    conv = kinds["conv"]
    pool_cls = _choice("pool", pool, {name: kinds[name] for name in ("avg", "max")})
    return nn.Sequential(
        conv(1, 6, kernel_size=5, padding=2), act(),
        pool_cls(kernel_size=2, stride=2),
        conv(6, 16, kernel_size=5), act(),
        pool_cls(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes),
    )  # fmt: skip


INITS = ("xavier", "default")


def init_weights(model: nn.Module, scheme: str = "xavier") -> None:
    """Initialise conv and linear weights: ``xavier`` uniform (the book's) or ``default``."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; choose one of: {', '.join(INITS)}")
    if scheme == "xavier":
        for module in model.modules():
            if isinstance(module, (nn.Linear, *layers.CONV_TYPES)):
                nn.init.xavier_uniform_(module.weight)
