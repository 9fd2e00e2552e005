"""nn.Modules built on ``cnnlab.ops``: drop-in replacements for their torch namesakes."""

from torch import nn

from cnnlab.layers.conv import Conv2D, Conv2d
from cnnlab.layers.pooling import AvgPool2d, MaxPool2d

# Either backend's layers, for code that looks for "a conv layer" or "a pooling layer".
CONV_TYPES = (nn.Conv2d, Conv2d)
POOL_TYPES = (nn.AvgPool2d, nn.MaxPool2d, AvgPool2d, MaxPool2d)

__all__ = ["CONV_TYPES", "POOL_TYPES", "AvgPool2d", "Conv2D", "Conv2d", "MaxPool2d"]
