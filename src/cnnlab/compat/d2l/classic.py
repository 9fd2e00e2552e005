"""The Chinese edition's (d2l-zh, PyTorch) helpers for the chapter: ``train_ch6``,
``load_data_fashion_mnist``, ``Animator``, ``Accumulator``, ``Timer``, ...

Same signatures, return values and printed lines as the book's; the original's known
flaws are fixed rather than copied:

- ``train_ch6`` with fewer than 5 batches per epoch no longer divides by zero;
- on a CPU, denormal floats are flushed to zero (sigmoid networks run ~20x faster);
- ``Timer.avg()`` of no measurements is 0.0, not a ZeroDivisionError.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import nn

from cnnlab import layers
from cnnlab.accel.cores import FreeCores
from cnnlab.compat.d2l.display import FigureOutput
from cnnlab.data import Batches, load_dataset
from cnnlab.device import numerics
from cnnlab.ops import corr2d
from cnnlab.training.control import Diverged

__all__ = [
    "Accumulator",
    "Animator",
    "Timer",
    "accuracy",
    "corr2d",
    "evaluate_accuracy_gpu",
    "get_dataloader_workers",
    "get_fashion_mnist_labels",
    "load_data_fashion_mnist",
    "plt",
    "show_images",
    "train_ch6",
    "try_all_gpus",
    "try_gpu",
]


TEXT_LABELS = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


def try_gpu(i: int = 0) -> torch.device:
    """GPU ``i`` if it exists, else the CPU."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f"cuda:{i}")
    return torch.device("cpu")


def try_all_gpus() -> list[torch.device]:
    """Every GPU, or ``[cpu]`` when there is none."""
    gpus = [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return gpus if gpus else [torch.device("cpu")]


def get_dataloader_workers() -> int:
    """The book uses 4 worker processes; cnnlab's batches come from memory and need none."""
    return 0


def get_fashion_mnist_labels(labels: Sequence[int] | torch.Tensor) -> list[str]:
    """Text labels of Fashion-MNIST class indices, spelled as the book spells them."""
    return [TEXT_LABELS[int(i)] for i in labels]


class Loader:
    """What ``DataLoader`` gives the chapter's code: ``len()`` in batches, and a fresh
    (reshuffled, for the training set) pass at every ``for``; the batches are gathered
    and resized on the device the split lives on, in whole batches."""

    def __init__(self, batches: Batches, resize: tuple[int, int] | None) -> None:
        native = tuple(batches.images.shape[1:])
        self.batches, self.passes = batches, 0
        self.resize = None if resize is None or tuple(resize) == native else tuple(resize)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The reader's loop runs between the yields (the book's cells define train_ch6
        # themselves): denormals are flushed while it runs, or the sigmoid nets would run
        # ~20x slower on a CPU, and the flush is put back when the pass ends. The thread
        # count follows the cores other programs leave free (accel.cores).
        device = self.batches.images.device
        with numerics(device):
            cores = FreeCores.on(device)
            self.passes += 1
            for x, y in self.batches.epoch(self.passes - 1):
                cores.tick()
                yield resize_batch(x, self.resize), y


def resize_batch(x: torch.Tensor, size: tuple[int, ...] | None) -> torch.Tensor:
    """``x`` (B, C, H, W) resized to ``size`` as torchvision's Resize does (bilinear,
    antialiased); unchanged when ``size`` is None."""
    if size is None:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True)


BOOK_ROOT = "../data"  # where the book's loaders keep the datasets, relative to the notebook
MAX_SIDE = 1024  # a batch of 256 such images is 1 GiB of float32


def image_size(resize: int | Sequence[int] | None) -> tuple[int, int] | None:
    """The book's ``resize`` argument (an int for a square, or (H, W)) as (H, W); anything
    else is refused here, not by torch at the first batch.

    >>> image_size(224), image_size((96, 64)), image_size(None)
    ((224, 224), (96, 64), None)
    """
    if resize is None:
        return None
    sides = [resize, resize] if not isinstance(resize, str | bytes | Sequence) else resize
    try:
        height, width = (operator.index(v) for v in sides)  # ints only: not 32.5, not "28"
    except (TypeError, ValueError):
        height = width = 0
    odd = isinstance(resize, str | bytes | bool) or any(isinstance(v, bool) for v in sides)
    if odd or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(
            f"resize must be an int or a (height, width) pair of ints from 1 to {MAX_SIDE}, "
            f"as the book passes it (224, or (224, 224)); got {resize!r}"
        )
    return (height, width)


def load_data_fashion_mnist(
    batch_size: int,
    resize: int | tuple[int, int] | None = None,
    *,
    data_dir: str | Path | None = None,
) -> tuple[Loader, Loader]:
    """Fashion-MNIST as (train_iter, test_iter) of (X (B, 1, H, W) in [0, 1], y (B,) int64),
    gathered and resized on ``try_gpu()``, the device the book trains on.

    The training order is reshuffled at every pass, from a seed drawn from torch's global
    generator (so ``torch.manual_seed`` makes it repeatable, as with ``DataLoader``).
    The files are looked for where the book keeps them (``../data/FashionMNIST/raw``),
    then in cnnlab's usual places, and downloaded into cnnlab's cache on first use;
    ``data_dir`` (cnnlab's addition) names a directory of your own.
    """
    train, test = load_dataset("fashion-mnist", data_dir, root=BOOK_ROOT)
    size, device = image_size(resize), try_gpu()
    return (
        Loader(Batches(train, batch_size, device, shuffle=True, seed=draw_seed()), size),
        Loader(Batches(test, batch_size, device), size),
    )


def draw_seed() -> int:
    """A shuffling seed from torch's global generator, as ``DataLoader`` draws one."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """The number of correct predictions (a count, not a fraction, as in the book)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    return float((y_hat.type(y.dtype) == y).sum())


class Accumulator:
    """Sums over ``n`` variables."""

    def __init__(self, n: int) -> None:
        self.data = [0.0] * n

    def add(self, *args: Any) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args, strict=False)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx: int) -> float:
        return self.data[idx]


class Timer:
    """Records several running times."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times) if self.times else 0.0

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list[float]:
        return np.array(self.times).cumsum().tolist()  # type: ignore[no-any-return]


class Animator:
    """Plots data as it arrives: in place in a notebook; elsewhere the figure is written
    to ``path`` (default ``animator.png``) after every ``add``, never printed."""

    def __init__(
        self,
        xlabel: str | None = None,
        ylabel: str | None = None,
        legend: Sequence[str] | None = None,
        xlim: Sequence[float] | None = None,
        ylim: Sequence[float] | None = None,
        xscale: str = "linear",
        yscale: str = "linear",
        fmts: Sequence[str] = ("-", "m--", "g-.", "r:"),
        nrows: int = 1,
        ncols: int = 1,
        figsize: tuple[float, float] = (3.5, 2.5),
        path: str | Path = "animator.png",
    ) -> None:
        self.fig = Figure(figsize=figsize, layout="constrained")
        self.axes = list(np.atleast_1d(self.fig.subplots(nrows, ncols)).flat)
        self.labels = (xlabel, ylabel, legend or [], xlim, ylim, xscale, yscale)
        self.fmts, self.output = fmts, FigureOutput(path)
        self.X: list[list[float]] = []
        self.Y: list[list[float]] = []

    def config_axes(self) -> None:
        xlabel, ylabel, legend, xlim, ylim, xscale, yscale = self.labels
        ax = self.axes[0]
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xscale(xscale)
        ax.set_yscale(yscale)
        # An empty range ([1, 1] from train_ch6 with one epoch) would only warn: autoscale.
        if xlim and xlim[0] != xlim[-1]:
            ax.set_xlim(xlim)
        if ylim and ylim[0] != ylim[-1]:
            ax.set_ylim(ylim)
        if legend:
            ax.legend(legend)
        ax.grid()

    def add(self, x: Any, y: Any) -> None:
        """Add one point per curve: ``y`` a number or a sequence (``None`` skips a curve)."""
        if not hasattr(y, "__len__"):
            y = [y]
        n = len(y)
        if not hasattr(x, "__len__"):
            x = [x] * n
        if not self.X:
            self.X = [[] for _ in range(n)]
            self.Y = [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y, strict=False)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)
        self.axes[0].cla()
        for xs, ys, fmt in zip(self.X, self.Y, self.fmts, strict=False):
            self.axes[0].plot(xs, ys, fmt)
        self.config_axes()
        self.output.show(self.fig)


def show_images(
    imgs: Sequence[Any],
    num_rows: int,
    num_cols: int,
    titles: Sequence[str] | None = None,
    scale: float = 1.5,
) -> Any:
    """A grid of images with optional titles; returns the axes (pyplot, as the book)."""
    _, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale))
    axes = np.atleast_1d(axes).flatten()
    for i, (ax, img) in enumerate(zip(axes, imgs, strict=False)):
        ax.imshow(img.detach().cpu().numpy() if torch.is_tensor(img) else img)
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
        if titles:
            ax.set_title(titles[i])
    return axes


def evaluate_accuracy_gpu(
    net: nn.Module, data_iter: Any, device: torch.device | str | None = None
) -> float:
    """Accuracy of ``net`` on ``data_iter``, on ``device`` (default: the net's)."""
    if isinstance(net, nn.Module):
        net.eval()
        if not device:
            device = next(iter(net.parameters())).device
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            X = [x.to(device) for x in X] if isinstance(X, list) else X.to(device)
            y = y.to(device)
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def place(net: nn.Module, device: torch.device) -> None:
    """Move ``net`` to ``device`` and set it up to run fast there, as ``cnnlab train`` does:
    conv weights in channels-last (oneDNN's faster layout for LeNet's few-channel
    convolutions) once no lazy layer is left to initialise. (Denormals are flushed while
    a loader is iterated.)"""
    net.to(device)
    lazy = any(isinstance(p, nn.parameter.UninitializedParameter) for p in net.parameters())
    if device.type == "cpu" and not lazy:
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def diverged(epoch: int, step: int | None, lr: float) -> Diverged:
    """The error that stops the book's loops when the loss stops being a number, as it
    stops ``cnnlab train`` (``step`` None: somewhere in the epoch)."""
    where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
    tip = f"Try a lower learning rate, e.g. lr={lr / 10:g}."
    if not math.isfinite(lr):
        tip = "The learning rate itself is not a finite number: give a positive one."
    return Diverged(
        f"training diverged: the loss is not a finite number in {where} (lr {lr}). {tip}"
    )


def train_ch6(
    net: nn.Module,
    train_iter: Any,
    test_iter: Any,
    num_epochs: int,
    lr: float,
    device: torch.device | str,
) -> None:
    """The chapter's training loop: Xavier init, SGD, cross-entropy, a curve of train loss,
    train accuracy and test accuracy, and the book's two summary lines."""

    def init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, *layers.CONV_TYPES)):
            nn.init.xavier_uniform_(m.weight)

    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 0:
        raise ValueError(f"num_epochs must be a whole number >= 0, got {num_epochs!r}")
    net.apply(init_weights)
    print("training on", device)
    if num_epochs == 0:
        return
    device = torch.device(device)
    place(net, device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    animator = Animator(
        xlabel="epoch", xlim=[1, num_epochs], legend=["train loss", "train acc", "test acc"]
    )
    timer, num_batches = Timer(), len(train_iter)
    every = max(1, num_batches // 5)  # the book's num_batches // 5 is 0 below 5 batches
    for epoch in range(num_epochs):
        metric = Accumulator(3)
        net.train()
        for i, (X, y) in enumerate(train_iter):
            timer.start()
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741  (the book's name)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], accuracy(y_hat, y), X.shape[0])
            timer.stop()
            train_l = metric[0] / metric[2]
            train_acc = metric[1] / metric[2]
            if not math.isfinite(train_l):  # the book would go on, printing "loss nan"
                raise diverged(epoch, i, lr)
            if (i + 1) % every == 0 or i == num_batches - 1:
                animator.add(epoch + (i + 1) / num_batches, (train_l, train_acc, None))
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        animator.add(epoch + 1, (None, None, test_acc))
    print(f"loss {train_l:.3f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}")
    print(f"{metric[2] * num_epochs / timer.sum():.1f} examples/sec on {device}")
