"""The Modern CNNs chapter under ``from cnnlab.compat import d2l``: each test makes the
calls a section's PyTorch cells make, in the Chinese edition's style (``train_ch6``,
``load_data_fashion_mnist(..., resize=...)``) and the English edition's (a
``d2l.Classifier`` with ``layer_summary``, ``FashionMNIST(resize=...)``, ``Trainer``),
and checks the shapes the book prints. Training runs one epoch on a small part of
Fashion-MNIST: what is checked is that the book's calls work at the book's image sizes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.compat import d2l
from cnnlab.compat.d2l import classic, oo
from cnnlab.data import datasets as ds
from cnnlab.data.load import load_dataset
from tests.conftest import needs_real_data


def conv_relu(channels: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.LazyConv2d(channels, kernel, stride, padding), nn.ReLU()]


def dense(features: int = 4096) -> list[nn.Module]:
    return [nn.LazyLinear(features), nn.ReLU(), nn.Dropout(0.5)]


def alexnet() -> nn.Sequential:
    pool = nn.MaxPool2d(3, 2)
    return nn.Sequential(
        *conv_relu(96, 11, 4, 1),
        pool,
        *conv_relu(256, 5, padding=2),
        pool,
        *conv_relu(384, 3, padding=1),
        *conv_relu(384, 3, padding=1),
        *conv_relu(256, 3, padding=1),
        pool,
        nn.Flatten(),
        *dense(),
        *dense(),
        nn.LazyLinear(10),
    )


def vgg(arch: Sequence[tuple[int, int]]) -> nn.Sequential:
    blocks = [
        nn.Sequential(
            *itertools.chain(*(conv_relu(c, 3, padding=1) for _ in range(n))), nn.MaxPool2d(2, 2)
        )
        for n, c in arch
    ]
    return nn.Sequential(*blocks, nn.Flatten(), *dense(), *dense(), nn.LazyLinear(10))


VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def nin() -> nn.Sequential:
    def block(channels: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
        return nn.Sequential(
            *conv_relu(channels, kernel, stride, padding),
            *conv_relu(channels, 1),
            *conv_relu(channels, 1),
        )

    return nn.Sequential(
        block(96, 11, 4, 0),
        nn.MaxPool2d(3, 2),
        block(256, 5, 1, 2),
        nn.MaxPool2d(3, 2),
        block(384, 3, 1, 1),
        nn.MaxPool2d(3, 2),
        nn.Dropout(0.5),
        block(10, 3, 1, 1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


class Inception(nn.Module):
    def __init__(self, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            [
                nn.Sequential(*conv_relu(c1, 1)),
                nn.Sequential(*conv_relu(c2[0], 1), *conv_relu(c2[1], 3, padding=1)),
                nn.Sequential(*conv_relu(c3[0], 1), *conv_relu(c3[1], 5, padding=2)),
                nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_relu(c4, 1)),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([path(x) for path in self.paths], dim=1)


def googlenet() -> nn.Sequential:
    pool = nn.MaxPool2d(3, 2, 1)
    return nn.Sequential(
        nn.Sequential(*conv_relu(64, 7, 2, 3), pool),
        nn.Sequential(*conv_relu(64, 1), *conv_relu(192, 3, padding=1), pool),
        nn.Sequential(
            Inception(64, (96, 128), (16, 32), 32), Inception(128, (128, 192), (32, 96), 64), pool
        ),
        nn.Sequential(
            Inception(192, (96, 208), (16, 48), 64),
            Inception(160, (112, 224), (24, 64), 64),
            Inception(128, (128, 256), (24, 64), 64),
            Inception(112, (144, 288), (32, 64), 64),
            Inception(256, (160, 320), (32, 128), 128),
            pool,
        ),
        nn.Sequential(
            Inception(256, (160, 320), (32, 128), 128),
            Inception(384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        ),
        nn.LazyLinear(10),
    )


def lenet_bn() -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv2d(6, 5),
        nn.LazyBatchNorm2d(),
        nn.Sigmoid(),
        nn.AvgPool2d(2, 2),
        nn.LazyConv2d(16, 5),
        nn.LazyBatchNorm2d(),
        nn.Sigmoid(),
        nn.AvgPool2d(2, 2),
        nn.Flatten(),
        nn.LazyLinear(120),
        nn.LazyBatchNorm1d(),
        nn.Sigmoid(),
        nn.LazyLinear(84),
        nn.LazyBatchNorm1d(),
        nn.Sigmoid(),
        nn.LazyLinear(10),
    )


class Residual(nn.Module):
    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LazyConv2d(channels, 3, stride, 1),
            nn.LazyBatchNorm2d(),
            nn.ReLU(),
            nn.LazyConv2d(channels, 3, 1, 1),
            nn.LazyBatchNorm2d(),
        )
        self.shortcut = nn.LazyConv2d(channels, 1, stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def stem(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv2d(channels, 7, 2, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    )


def resnet18() -> nn.Sequential:
    stages = [
        nn.Sequential(Residual(c, 1 if c == 64 else 2), Residual(c)) for c in (64, 128, 256, 512)
    ]
    return nn.Sequential(
        stem(64), *stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)
    )


class DenseBlock(nn.Module):
    def __init__(self, convs: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(growth, 3, padding=1))
            for _ in range(convs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.cat((x, conv(x)), dim=1)
        return x


def transition(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(channels, 1), nn.AvgPool2d(2, 2)
    )


def densenet() -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Sequential(
            nn.LazyConv2d(64, 7, 2, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
    ]
    channels = 64
    for i in range(4):
        layers.append(DenseBlock(4, 32))
        channels += 4 * 32
        if i < 3:
            channels //= 2
            layers.append(transition(channels))
    return nn.Sequential(
        *layers,
        nn.LazyBatchNorm2d(),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.LazyLinear(10),
    )


def regnetx32() -> nn.Sequential:
    """The English edition's AnyNet with RegNetX-32's design: stages of d2l.ResNeXtBlock."""

    def stage(depth: int, channels: int) -> nn.Sequential:
        first = d2l.ResNeXtBlock(channels, 16, 1, use_1x1conv=True, strides=2)
        return nn.Sequential(first, *(d2l.ResNeXtBlock(channels, 16, 1) for _ in range(depth - 1)))

    return nn.Sequential(
        nn.Sequential(nn.LazyConv2d(32, 3, 2, 1), nn.LazyBatchNorm2d(), nn.ReLU()),
        stage(4, 32),
        stage(6, 80),
        nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)),
    )


def classifier(build: Callable[[], nn.Module]) -> type[d2l.Classifier]:
    """The English edition's way to a model: a ``d2l.Classifier`` whose ``net`` is built."""

    class Net(d2l.Classifier):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = build()

    return Net


# section: (network, side of the printed shapes' input, first and last lines printed,
# training image side, lr, batch size)
SECTIONS: dict[str, tuple[Callable[[], nn.Module], int, str, str, int, float, int]] = {
    "alexnet": (
        alexnet,
        224,
        "Conv2d output shape:\t torch.Size([1, 96, 54, 54])",
        "Linear output shape:\t torch.Size([1, 10])",
        224,
        0.01,
        128,
    ),
    "vgg": (
        lambda: vgg(VGG11),
        224,
        "Sequential output shape:\t torch.Size([1, 64, 112, 112])",
        "Linear output shape:\t torch.Size([1, 10])",
        224,
        0.05,
        128,
    ),
    "nin": (
        nin,
        224,
        "Sequential output shape:\t torch.Size([1, 96, 54, 54])",
        "Flatten output shape:\t torch.Size([1, 10])",
        224,
        0.1,
        128,
    ),
    "googlenet": (
        googlenet,
        96,
        "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
        "Linear output shape:\t torch.Size([1, 10])",
        96,
        0.1,
        128,
    ),
    "batch-norm": (
        lenet_bn,
        28,
        "Conv2d output shape:\t torch.Size([1, 6, 24, 24])",
        "Linear output shape:\t torch.Size([1, 10])",
        28,
        1.0,
        256,
    ),
    "resnet": (
        resnet18,
        224,
        "Sequential output shape:\t torch.Size([1, 64, 56, 56])",
        "Linear output shape:\t torch.Size([1, 10])",
        96,
        0.05,
        256,
    ),
    "densenet": (
        densenet,
        96,
        "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
        "Linear output shape:\t torch.Size([1, 10])",
        96,
        0.1,
        256,
    ),
    "cnn-design": (
        regnetx32,
        96,
        "Sequential output shape:\t torch.Size([1, 32, 48, 48])",
        "Sequential output shape:\t torch.Size([1, 10])",
        96,
        0.05,
        128,
    ),
}


def test_resnext_block_prints_the_books_shape(capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    blk = d2l.ResNeXtBlock(32, 16, 1)
    print(blk(d2l.randn(4, 32, 96, 96)).shape)
    assert capsys.readouterr().out == "torch.Size([4, 32, 96, 96])\n"
    convs = [m for m in blk.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 32 // 16, 1]  # the book's bot_channels // groups
    wide = d2l.ResNeXtBlock(64, 16, 0.5, use_1x1conv=True, strides=2)
    assert wide(torch.randn(2, 32, 12, 12)).shape == (2, 64, 6, 6)
    with pytest.raises(ValueError, match="groups=64 must be from 1 to the 32 bottleneck"):
        d2l.ResNeXtBlock(32, 64, 1)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_shapes_print_as_in_the_book(section: str, capsys: pytest.CaptureFixture[str]) -> None:
    build, side, first, last, *_ = SECTIONS[section]
    torch.manual_seed(0)
    X = torch.rand(size=(1, 1, side, side))
    for layer in build().eval():  # the Chinese edition's loop (eval: batch norm, one image)
        X = layer(X)
        print(layer.__class__.__name__, "output shape:\t", X.shape)
    chinese = capsys.readouterr().out.splitlines()
    assert (chinese[0], chinese[-1]) == (first, last)

    classifier(build)().eval().layer_summary((1, 1, side, side))  # the English edition's
    assert capsys.readouterr().out.splitlines() == chinese


@pytest.fixture
def few_examples(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[int], None]:
    """``few_examples(n)``: the compat loaders see the first ``n`` training and 32 test
    images of the real Fashion-MNIST; the working directory is ``tmp_path``."""
    whole = load_dataset

    def use(n: int) -> None:
        def first_few(*args: object, **kwargs: object) -> tuple[ds.ImageSet, ds.ImageSet]:
            train, test = whole(*args, **kwargs)  # type: ignore[arg-type]
            return (
                ds.ImageSet(train.images[:n], train.labels[:n]),
                ds.ImageSet(test.images[:32], test.labels[:32]),
            )

        monkeypatch.setattr(classic, "load_dataset", first_few)
        monkeypatch.setattr(oo, "load_dataset", first_few)

    monkeypatch.chdir(tmp_path)
    return use


@pytest.mark.slow
@needs_real_data
@pytest.mark.parametrize("section", list(SECTIONS))
def test_training_cells_of_both_editions(
    section: str,
    few_examples: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    build, _, _, _, side, lr, batch_size = SECTIONS[section]
    few_examples(batch_size + 16)  # a full batch and a short last one, in each edition
    if section == "vgg":  # the book trains a quarter of VGG-11's channels
        build = lambda: vgg([(n, c // 4) for n, c in VGG11])  # noqa: E731
    torch.manual_seed(0)
    net = build()
    net(torch.zeros(2, 1, side, side))  # the Chinese edition's nets are shaped already
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, resize=side)
    assert next(iter(train_iter))[0].shape == (batch_size, 1, side, side)
    d2l.train_ch6(net, train_iter, test_iter, 1, lr, d2l.try_gpu())
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("training on ") and printed[1].startswith("loss ")
    assert (tmp_path / "animator.png").is_file()

    model = classifier(build)(lr=lr)
    data = d2l.FashionMNIST(batch_size=batch_size, resize=(side, side))
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
    trainer.fit(model, data)
    assert trainer.train_batch_idx == 2 and len(model.board.data["val_acc"]) == 1
    assert (tmp_path / "progress.png").is_file()
