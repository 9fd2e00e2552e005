"""The Modern-CNN chapter's networks (d2l, "Modern Convolutional Neural Networks"), written
from the chapter's text: AlexNet, VGG-11, NiN, GoogLeNet, the batch-norm LeNet, ResNet-18
and DenseNet.

Each takes the dataset's images as they are (1x28x28 for Fashion-MNIST) and, as its first
layer, resizes them on the device to the side the book trains it at (``resize``: 224 for
AlexNet, VGG and NiN, 96 for GoogLeNet, ResNet and DenseNet; 0 keeps the images' size), so
every command (train, eval, predict, report, export) feeds it what it fed LeNet. The layers
after it are the book's, block for block (the top-level children are the blocks whose
output shapes the book's shape cells print).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.registry import register_model
from cnnlab.ops.shapes import conv_output_size

# The book's training settings for each network (lr, batch size, epochs), the defaults of
# `cnnlab train --model NAME` for the flags left out.
BOOK_TRAINING: dict[str, dict[str, float | int]] = {
    "alexnet": {"lr": 0.01, "batch_size": 128, "epochs": 10},
    "vgg11": {"lr": 0.01, "batch_size": 128, "epochs": 10},
    "nin": {"lr": 0.05, "batch_size": 128, "epochs": 10},
    "googlenet": {"lr": 0.01, "batch_size": 128, "epochs": 10},
    "bnlenet": {"lr": 0.1, "batch_size": 128, "epochs": 10},
    "resnet18": {"lr": 0.01, "batch_size": 128, "epochs": 10},
    "densenet": {"lr": 0.01, "batch_size": 128, "epochs": 10},
}


class Resize(nn.Module):
    """Images (N, C, H, W) resized to ``size`` x ``size`` (bilinear) where they are, as the
    book's ``FashionMNIST(resize=...)`` resizes them before they reach the network."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _front(resize: int, image_size: tuple[int, int]) -> tuple[list[nn.Module], int, int]:
    """The resizing layer (none for ``resize`` 0) and the size the network then sees."""
    if resize < 0 or resize > 1024:
        raise ConfigError(f"resize must be a side from 1 to 1024, or 0 to keep it, got {resize}")
    if resize:
        return [Resize(resize)], resize, resize
    return [], image_size[0], image_size[1]


def _side(n: int, layers: Sequence[tuple[int, int, int]], name: str) -> int:
    """The side ``n`` after (kernel, stride, padding) windows; a map too small is refused."""
    try:
        for kernel, stride, padding in layers:
            n = conv_output_size(n, kernel, stride, padding)
    except ValueError:
        raise ConfigError(
            f"{name}: the images are too small for its windows; train with a larger resize "
            "(--model-options resize=224)"
        ) from None
    return n


def _dense_head(width: int, num_classes: int, dropout: float) -> list[nn.Module]:
    """AlexNet's and VGG's two 4096-wide dense layers with dropout, then the classes."""
    return [
        nn.Flatten(),
        nn.Linear(width, 4096),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
    ]


@register_model("alexnet")
def alexnet(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 224,
    dropout: float = 0.5,
) -> nn.Sequential:
    """AlexNet (Krizhevsky et al., 2012), at 224x224 as the book trains it. Five
    convolutions (11x11 stride 4, 5x5, then three 3x3) with ReLU and three 3x3 max poolings
    of stride 2, then two dense layers of 4096 with dropout; at 224x224."""
    front, h, w = _front(resize, image_size)
    windows = [(11, 4, 1), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1)]
    windows.append((3, 2, 0))
    h, w = (_side(n, windows, "alexnet") for n in (h, w))
    return nn.Sequential(
        *front,
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        *_dense_head(256 * h * w, num_classes, dropout),
    )


VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))  # (convolutions, channels) per block


def vgg_block(convolutions: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """``convolutions`` 3x3 convolutions (padding 1) with ReLU, then 2x2 max pooling."""
    layers: list[nn.Module] = []
    for i in range(convolutions):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)]
        layers += [nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2))


@register_model("vgg11")
def vgg11(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 224,
    ratio: int = 1,
    dropout: float = 0.5,
) -> nn.Sequential:
    """VGG-11 (Simonyan and Zisserman, 2014), at 224x224. Five blocks of 3x3 convolutions
    and 2x2 max pooling, ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), then AlexNet's
    dense layers; ``ratio=4`` divides the convolutions' widths by 4, as the book trains it."""
    if ratio < 1 or 64 % ratio:
        raise ConfigError(f"ratio must divide 64 (1, 2, 4, ...), got {ratio}")
    front, h, w = _front(resize, image_size)
    blocks: list[nn.Module] = []
    channels = in_channels
    for convolutions, width in VGG11:
        blocks.append(vgg_block(convolutions, channels, width // ratio))
        channels = width // ratio
    h, w = (_side(n, [(2, 2, 0)] * len(VGG11), "vgg11") for n in (h, w))
    return nn.Sequential(*front, *blocks, *_dense_head(channels * h * w, num_classes, dropout))


def nin_block(
    in_channels: int, out_channels: int, kernel: int, stride: int, padding: int
) -> nn.Sequential:
    """A convolution and two 1x1 convolutions, each followed by ReLU: a small network in
    place of each pixel's linear filter."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


@register_model("nin")
def nin(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 224,
    dropout: float = 0.5,
) -> nn.Sequential:
    """Network in Network (Lin et al., 2013), at 224x224. NiN blocks with AlexNet's
    windows, the last one giving one map per class, averaged over the image (no dense layer
    at all)."""
    front, _, _ = _front(resize, image_size)
    return nn.Sequential(
        *front,
        nin_block(in_channels, 96, kernel=11, stride=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel=5, stride=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel=3, stride=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(dropout),
        nin_block(384, num_classes, kernel=3, stride=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


class Inception(nn.Module):
    """Four branches side by side, their maps concatenated: a 1x1 convolution; 1x1 then
    3x3; 1x1 then 5x5; 3x3 max pooling then 1x1 (``c1`` to ``c4``: their widths)."""

    def __init__(
        self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int
    ) -> None:
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), nn.ReLU())
        self.b2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1)
        )
        self.b3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2)
        )
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b1(x), F.relu(self.b2(x)), F.relu(self.b3(x)), F.relu(self.b4(x)))
        return torch.cat(branches, dim=1)  # (N, c1 + c2[1] + c3[1] + c4, H, W)


def _inceptions(
    in_channels: int, widths: Sequence[tuple[int, tuple[int, int], tuple[int, int], int]]
) -> list[Inception]:
    blocks = []
    for c1, c2, c3, c4 in widths:
        blocks.append(Inception(in_channels, c1, c2, c3, c4))
        in_channels = blocks[-1].out_channels
    return blocks


@register_model("googlenet")
def googlenet(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 96,
) -> nn.Sequential:
    """GoogLeNet (Szegedy et al., 2015), at 96x96 as the book builds it. A 7x7 stem, 1x1 and
    3x3 convolutions, then nine Inception blocks in three groups with max pooling between,
    global average pooling and one dense layer."""
    front, _, _ = _front(resize, image_size)
    b1 = nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    )
    b2 = nn.Sequential(
        nn.Conv2d(64, 64, 1),
        nn.ReLU(),
        nn.Conv2d(64, 192, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    )
    b3 = nn.Sequential(
        *_inceptions(192, [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)]),
        nn.MaxPool2d(3, 2, 1),
    )
    b4 = nn.Sequential(
        *_inceptions(
            480,
            [
                (192, (96, 208), (16, 48), 64),
                (160, (112, 224), (24, 64), 64),
                (128, (128, 256), (24, 64), 64),
                (112, (144, 288), (32, 64), 64),
                (256, (160, 320), (32, 128), 128),
            ],
        ),
        nn.MaxPool2d(3, 2, 1),
    )
    b5 = nn.Sequential(
        *_inceptions(832, [(256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)]),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )
    return nn.Sequential(*front, b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))


@register_model("bnlenet")
def bnlenet(
    num_classes: int = 10, in_channels: int = 1, image_size: tuple[int, int] = (28, 28)
) -> nn.Sequential:
    """The batch-norm chapter's LeNet (Ioffe and Szegedy, 2015), at 28x28. The classic LeNet
    without padding, batch norm after every convolution and hidden dense layer, before its
    sigmoid. (``lenet-bn`` is cnnlab's LeNet, first convolution padded, with batch norm.)"""
    h, w = (_side(n, [(5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0)], "bnlenet") for n in image_size)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5),
        nn.BatchNorm2d(6),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.BatchNorm2d(16),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * h * w, 120),
        nn.BatchNorm1d(120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.BatchNorm1d(84),
        nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )


def _stem(in_channels: int) -> nn.Sequential:
    """ResNet's and DenseNet's first block: 7x7 convolution of stride 2, batch norm, ReLU,
    3x3 max pooling of stride 2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


class Residual(nn.Module):
    """Two 3x3 convolutions with batch norm whose output is added to the block's input
    (through a 1x1 convolution of the same stride where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        reshape = stride != 1 or in_channels != channels
        self.conv3 = nn.Conv2d(in_channels, channels, 1, stride=stride) if reshape else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = self.conv3(x) if self.conv3 is not None else x
        return F.relu(y + shortcut)


@register_model("resnet18")
def resnet18(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 96,
) -> nn.Sequential:
    """ResNet-18 (He et al., 2016), at 96x96 as the book builds it. The 7x7 stem, four
    stages of two residual blocks (64, 128, 256, 512 channels; each stage after the first
    halves the maps), global average pooling and one dense layer."""
    front, _, _ = _front(resize, image_size)
    stages: list[nn.Module] = []
    channels = 64
    for i, width in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        stages.append(nn.Sequential(Residual(channels, width, stride), Residual(width, width)))
        channels = width
    head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, num_classes))
    return nn.Sequential(*front, _stem(in_channels), *stages, head)


class DenseBlock(nn.Module):
    """Convolution blocks (batch norm, ReLU, 3x3 convolution of ``growth`` maps), each fed
    every map before it: the block's output is its input with all their outputs appended."""

    def __init__(self, in_channels: int, convolutions: int, growth: int) -> None:
        super().__init__()
        self.net = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(in_channels + i * growth),
                nn.ReLU(),
                nn.Conv2d(in_channels + i * growth, growth, kernel_size=3, padding=1),
            )
            for i in range(convolutions)
        )
        self.out_channels = in_channels + convolutions * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.net:
            x = torch.cat((x, block(x)), dim=1)
        return x


def transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """Batch norm, ReLU, a 1x1 convolution to ``out_channels`` and 2x2 average pooling."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )


@register_model("densenet")
def densenet(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    resize: int = 96,
    growth: int = 32,
    blocks: tuple[int, ...] = (4, 4, 4, 4),
) -> nn.Sequential:
    """DenseNet (Huang et al., 2017), at 96x96 as the book builds it. The 7x7 stem, dense
    blocks of ``blocks`` convolutions adding ``growth`` maps each, a transition halving
    maps and channels between them, then batch norm, ReLU, global average pooling and one
    dense layer."""
    if growth < 1 or not blocks or min(blocks) < 1:
        raise ConfigError(f"growth and blocks must be positive, got {growth} and {blocks}")
    front, _, _ = _front(resize, image_size)
    layers: list[nn.Module] = [*front, _stem(in_channels)]
    channels = 64
    for i, convolutions in enumerate(blocks):
        layers.append(DenseBlock(channels, convolutions, growth))
        channels += convolutions * growth
        if i != len(blocks) - 1:
            layers.append(transition(channels, channels // 2))
            channels //= 2
    head = nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )
    return nn.Sequential(*layers, head)


register_model("vgg11-small")(partial(vgg11, ratio=4))
