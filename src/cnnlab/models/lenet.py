"""LeNet-5 as the book builds it (d2l, section "Convolutional Neural Networks (LeNet)")."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.registry import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def _choice(kind: str, value: str, table: dict[str, type[nn.Module]]) -> type[nn.Module]:
    if value not in table:
        raise ConfigError(f"unknown {kind} {value!r}; choose one of: {', '.join(table)}")
    return table[value]


@register_model("lenet")
def lenet(activation: str = "sigmoid", pool: str = "avg", num_classes: int = 10) -> nn.Sequential:
    """The book's LeNet for 1x28x28 inputs: two conv blocks, three dense layers.

    Shapes: 1x28x28 -> 6x28x28 -> 6x14x14 -> 16x10x10 -> 16x5x5 -> 400 -> 120 -> 84 -> classes.
    """
    act = _choice("activation", activation, ACTIVATIONS)
    pool_cls = _choice("pool", pool, POOLS)
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), act(),
        pool_cls(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), act(),
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
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
