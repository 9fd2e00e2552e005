"""The one helper the Modern CNNs chapter takes from the book's library that the
convolutional-network chapter does not: the English edition's ``ResNeXtBlock``.

Every other cell of that chapter (AlexNet, VGG, NiN, GoogLeNet, batch normalization,
ResNet, DenseNet, AnyNet/RegNet) defines its networks itself and calls the same helpers
as LeNet does (``Classifier``, ``Trainer``, ``FashionMNIST(resize=...)``,
``load_data_fashion_mnist(..., resize=...)``, ``train_ch6``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A lazily shaped ``kernel`` x ``kernel`` convolution (size-preserving padding at
    stride 1) followed by batch normalization."""
    return nn.Sequential(
        nn.LazyConv2d(channels, kernel, stride=stride, padding=kernel // 2, groups=groups),
        nn.LazyBatchNorm2d(),
    )


class ResNeXtBlock(nn.Module):
    """The ResNeXt block as the English edition defines it: a 1x1 convolution down to
    ``round(num_channels * bot_mul)`` bottleneck channels, a grouped 3x3 convolution
    (stride ``strides``), a 1x1 convolution up to ``num_channels``, each batch-normalized,
    added to the input (through a strided 1x1 convolution when ``use_1x1conv``) before a
    last ReLU.

    ``groups`` is read as the book reads it: the 3x3 convolution has
    ``bottleneck_channels // groups`` groups, so ``groups`` is each group's width.

    >>> ResNeXtBlock(32, 16, 1)(torch.randn(4, 32, 96, 96)).shape
    torch.Size([4, 32, 96, 96])
    >>> ResNeXtBlock(64, 16, 0.5, use_1x1conv=True, strides=2)(torch.randn(1, 32, 8, 8)).shape
    torch.Size([1, 64, 4, 4])
    """

    def __init__(
        self,
        num_channels: int,
        groups: int,
        bot_mul: float,
        use_1x1conv: bool = False,
        strides: int = 1,
    ) -> None:
        super().__init__()
        bottleneck = round(num_channels * bot_mul)
        if not 1 <= groups <= bottleneck:  # else the convolution would have no group
            raise ValueError(
                f"ResNeXtBlock: groups={groups} must be from 1 to the {bottleneck} bottleneck "
                "channels (num_channels * bot_mul): the 3x3 convolution has "
                "bottleneck // groups groups, as in the book"
            )
        self.body = nn.Sequential(
            conv_bn(bottleneck, 1),
            nn.ReLU(),
            conv_bn(bottleneck, 3, strides, groups=bottleneck // groups),
            nn.ReLU(),
            conv_bn(num_channels, 1),
        )
        self.shortcut = conv_bn(num_channels, 1, strides) if use_1x1conv else nn.Identity()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(X) + self.shortcut(X))
