"""The English edition's object API (d2l-en v1): ``Module``, ``Trainer``, ``DataModule``.

The chapter's LeNet cell reads::

    trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=128)
    model = LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
    trainer.fit(model, data)

Every method the book defines keeps its name, signature and meaning, so the book's
``@d2l.add_to_class`` cells still override them. Underneath, cnnlab's fast path: the
images stay uint8 in memory on the training device and each batch is gathered and
resized there (no worker processes), denormals are flushed on a CPU, conv weights are
channels-last there, the curve's points are averaged on the device (one host read per
plotted point, not per batch), and ``num_gpus=1`` without a GPU trains on the CPU.
"""

from __future__ import annotations

import collections
import inspect
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from cnnlab.compat.d2l.classic import (
    TEXT_LABELS,
    Loader,
    diverged,
    draw_seed,
    image_size,
    place,
    resize_batch,
    show_images,
)
from cnnlab.compat.d2l.display import FigureOutput
from cnnlab.data import Batches, ImageSet, load_dataset


def cpu() -> torch.device:
    """The CPU device."""
    return torch.device("cpu")


def gpu(i: int = 0) -> torch.device:
    """CUDA device ``i`` (whether or not it exists, as in the book)."""
    return torch.device(f"cuda:{i}")


def num_gpus() -> int:
    """How many CUDA devices there are."""
    return torch.cuda.device_count()


def add_to_class(Class: type) -> Callable[[Any], Any]:
    """Decorator: attach the function to ``Class`` as a method (the book's way of
    writing a class across several notebook cells).

    >>> class A: ...
    >>> @add_to_class(A)
    ... def twice(self, x):
    ...     return 2 * x
    >>> A().twice(3)
    6
    """

    def attach(function: Any) -> Any:
        setattr(Class, function.__name__, function)
        return function

    return attach


class HyperParameters:
    """Base class whose ``save_hyperparameters`` turns the caller's arguments into
    attributes (and the ``hparams`` dict)."""

    def save_hyperparameters(self, ignore: Sequence[str] = ()) -> None:
        """Every argument of the calling ``__init__`` (but ``self``, names in ``ignore`` and
        names starting with ``_``) becomes an attribute of ``self``.

        >>> class Net(HyperParameters):
        ...     def __init__(self, lr, hidden=8):
        ...         self.save_hyperparameters()
        >>> Net(0.1).hparams
        {'lr': 0.1, 'hidden': 8}
        """
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        if caller is None:
            raise RuntimeError("save_hyperparameters must be called from a method")
        skip = {"self", *ignore}
        self.hparams = {
            k: v for k, v in caller.f_locals.items() if k not in skip and not k.startswith("_")
        }
        for k, v in self.hparams.items():
            setattr(self, k, v)


class Point(NamedTuple):
    x: float
    y: float


class ProgressBoard(HyperParameters):
    """Curves drawn as points arrive: each plotted point is the mean of ``every_n`` raw
    ones. In a notebook the figure redraws in place; elsewhere it is written to ``path``
    (cnnlab's addition, default ``progress.png``). Values may be tensors on any device:
    they are read once per plotted point."""

    # set by save_hyperparameters from __init__'s arguments
    xlabel: str | None
    ylabel: str | None
    xlim: Sequence[float] | None
    ylim: Sequence[float] | None
    xscale: str
    yscale: str
    ls: Sequence[str]
    colors: Sequence[str]
    fig: Figure | None
    axes: Any
    figsize: tuple[float, float]
    display: bool

    def __init__(
        self,
        xlabel: str | None = None,
        ylabel: str | None = None,
        xlim: Sequence[float] | None = None,
        ylim: Sequence[float] | None = None,
        xscale: str = "linear",
        yscale: str = "linear",
        ls: Sequence[str] = ("-", "--", "-.", ":"),
        colors: Sequence[str] = ("C0", "C1", "C2", "C3"),
        fig: Figure | None = None,
        axes: Any = None,
        figsize: tuple[float, float] = (3.5, 2.5),
        display: bool = True,
        path: str | Path = "progress.png",
    ) -> None:
        self.save_hyperparameters(ignore=["path"])
        self.output = FigureOutput(path)
        self.raw_points: dict[str, list[tuple[Any, Any]]] = collections.OrderedDict()
        self.data: dict[str, list[Point]] = collections.OrderedDict()

    def draw(self, x: Any, y: Any, label: str, every_n: int = 1) -> None:
        points = self.raw_points.setdefault(label, [])
        line = self.data.setdefault(label, [])
        points.append((x, y))
        if len(points) < max(1, every_n):  # the book's never draws when every_n is 0
            return
        xs, ys = zip(*points, strict=True)
        line.append(Point(_mean(xs), _mean(ys)))
        points.clear()
        if self.display:
            self.redraw()

    def redraw(self) -> None:
        if self.fig is None:
            self.fig = Figure(figsize=self.figsize, layout="constrained")
        axes = self.axes if self.axes is not None else (self.fig.axes or [self.fig.subplots()])[0]
        axes.cla()
        for (label, line), style, color in zip(
            self.data.items(), self.ls, self.colors, strict=False
        ):
            # one point per epoch for the validation lines: marked, so that even a single
            # epoch's val_acc shows (a line needs two points to be seen)
            marker = "o" if label.startswith("val_") or len(line) == 1 else None
            axes.plot(
                [p.x for p in line],
                [p.y for p in line],
                linestyle=style,
                color=color,
                label=label,
                marker=marker,
                markersize=4,
            )
        if self.xlim:
            axes.set_xlim(*self.xlim)
        if self.ylim:
            axes.set_ylim(*self.ylim)
        axes.set_xlabel(self.xlabel if self.xlabel else "x")
        axes.set_ylabel(self.ylabel or "")
        axes.set_xscale(self.xscale)
        axes.set_yscale(self.yscale)
        axes.legend()
        self.output.show(self.fig)


def _mean(values: Sequence[Any]) -> float:
    """The mean of numbers or 0-d tensors, read from the device once."""
    if all(isinstance(v, torch.Tensor) for v in values):
        return float(torch.stack([v.detach().float().reshape(()) for v in values]).mean())
    return sum(float(v) for v in values) / len(values)


class Module(nn.Module, HyperParameters):
    """Base class of models: ``net``, ``loss``, the training and validation steps, the
    optimizer, and the progress board the steps plot to."""

    # set by save_hyperparameters, by the subclass and by Trainer.prepare_model
    plot_train_per_epoch: int
    plot_valid_per_epoch: int
    lr: float
    net: Any
    trainer: Trainer

    def __init__(self, plot_train_per_epoch: int = 2, plot_valid_per_epoch: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()

    def loss(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "net"):
            raise AttributeError(f"{type(self).__name__} has no self.net: define it or forward")
        return self.net(X)  # type: ignore[no-any-return]

    def plot(self, key: str, value: torch.Tensor | float, train: bool) -> None:
        """Plot a point: train points at fractions of an epoch, validation at its end."""
        if not hasattr(self, "trainer"):
            raise RuntimeError("plot needs a trainer: call it from Trainer.fit")
        trainer = self.trainer
        self.board.xlabel = "epoch"
        if train:
            x = trainer.train_batch_idx / trainer.num_train_batches
            n = trainer.num_train_batches / self.plot_train_per_epoch
        else:
            x = trainer.epoch + 1
            n = trainer.num_val_batches / self.plot_valid_per_epoch
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self.board.draw(x, value, ("train_" if train else "val_") + key, every_n=int(n))

    def training_step(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=True)
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor]) -> None:
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Minibatch SGD at ``self.lr``."""
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def apply_init(
        self, inputs: Sequence[torch.Tensor], init: Callable[..., Any] | None = None
    ) -> None:
        """Run ``inputs`` through the network once (so lazy layers learn their shapes),
        then apply ``init`` to every submodule of ``net``."""
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(Module):
    """A Module for classification: cross-entropy loss, accuracy, and validation plots of
    both."""

    def validation_step(self, batch: Sequence[torch.Tensor]) -> None:
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)

    def accuracy(self, Y_hat: torch.Tensor, Y: torch.Tensor, averaged: bool = True) -> torch.Tensor:
        """The fraction of correct predictions (or each one's 0/1 with ``averaged=False``)."""
        preds = Y_hat.reshape(-1, Y_hat.shape[-1]).argmax(dim=1).type(Y.dtype)
        compare = (preds == Y.reshape(-1)).type(torch.float32)
        return compare.mean() if averaged else compare

    def loss(self, Y_hat: torch.Tensor, Y: torch.Tensor, averaged: bool = True) -> torch.Tensor:
        return F.cross_entropy(
            Y_hat.reshape(-1, Y_hat.shape[-1]),
            Y.reshape(-1),
            reduction="mean" if averaged else "none",
        )

    def layer_summary(self, X_shape: Sequence[int]) -> None:
        """Print each layer's output shape for a random input of ``X_shape``."""
        X = torch.randn(*X_shape, device=_device_of(self))
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        if not isinstance(p, nn.parameter.UninitializedParameter):
            return p.device
    return cpu()


def init_cnn(module: nn.Module) -> None:
    """Xavier-uniform weights for (exactly) ``nn.Linear`` and ``nn.Conv2d`` layers."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)  # type: ignore[arg-type]


class LeNet(Classifier):
    """The book's LeNet-5 (sigmoid, average pooling) with lazily shaped layers."""

    def __init__(self, lr: float = 0.1, num_classes: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.LazyLinear(120),
            nn.Sigmoid(),
            nn.LazyLinear(84),
            nn.Sigmoid(),
            nn.LazyLinear(num_classes),
        )


class DataModule(HyperParameters):
    """Base class of data: a training and a validation loader."""

    root: str  # set by save_hyperparameters
    num_workers: int
    batch_size: int  # set by the subclass

    def __init__(self, root: str = "../data", num_workers: int = 4) -> None:
        self.save_hyperparameters()

    def get_dataloader(self, train: bool) -> Iterable[Any]:
        raise NotImplementedError

    def train_dataloader(self) -> Iterable[Any]:
        return self.get_dataloader(train=True)

    def val_dataloader(self) -> Iterable[Any]:
        return self.get_dataloader(train=False)

    def get_tensorloader(
        self, tensors: Sequence[torch.Tensor], train: bool, indices: Any = slice(0, None)
    ) -> torch.utils.data.DataLoader[Any]:
        """A loader over ``tensors[indices]``, shuffled for training."""
        dataset = torch.utils.data.TensorDataset(*(t[indices] for t in tensors))
        return torch.utils.data.DataLoader(dataset, self.batch_size, shuffle=train)


class Images:
    """A split as the book indexes it: ``len`` and ``split[i] == (image (1, H, W), label)``."""

    def __init__(self, split: ImageSet, size: tuple[int, int] | None) -> None:
        self.split, self.size = split, size

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.split.images[i]).float().div_(255)[None, None]
        if self.size is not None and tuple(self.size) != tuple(image.shape[2:]):
            image = resize_batch(image, self.size)
        return image[0], int(self.split.labels[i])


class FashionMNIST(DataModule):
    """Fashion-MNIST at ``batch_size``, resized to ``resize`` (the validation split is the
    test set, as in the book). The files are looked for in ``root`` in torchvision's
    layout (``../data/FashionMNIST/raw``, where the book keeps them), then in cnnlab's
    usual places, and downloaded into cnnlab's cache on first use; ``data_dir`` (cnnlab's
    addition) names a directory of your own."""

    def __init__(
        self,
        batch_size: int = 64,
        resize: int | Sequence[int] = (28, 28),
        *,
        data_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["data_dir"])
        train, test = load_dataset("fashion-mnist", data_dir, root=self.root)
        size = image_size(resize)
        self.train, self.val = Images(train, size), Images(test, size)
        self.device = cpu()  # where the loaders gather batches; Trainer.fit sets its own

    def text_labels(self, indices: Iterable[Any]) -> list[str]:
        return [TEXT_LABELS[int(i)] for i in indices]

    def get_dataloader(self, train: bool) -> Loader:
        images = self.train if train else self.val
        batches = Batches(
            images.split,
            self.batch_size,
            self.device,
            shuffle=train,
            seed=draw_seed() if train else 0,
        )
        return Loader(batches, images.size)

    def visualize(
        self,
        batch: Sequence[torch.Tensor],
        nrows: int = 1,
        ncols: int = 8,
        labels: Sequence[str] = (),
    ) -> None:
        X, y = batch
        show_images(list(X.squeeze(1)), nrows, ncols, titles=list(labels) or self.text_labels(y))


class Trainer(HyperParameters):
    """Fits a ``Module`` to a ``DataModule``: ``max_epochs`` passes, each training on every
    batch, then validating. ``num_gpus`` GPUs are used if present (the first one: the
    book's Trainer trains on one device); without them it says so and uses the CPU."""

    max_epochs: int  # set by save_hyperparameters
    num_gpus: int
    gradient_clip_val: float

    def __init__(self, max_epochs: int, num_gpus: int = 0, gradient_clip_val: float = 0) -> None:
        self.save_hyperparameters()
        found = _count_gpus()
        self.gpus = [gpu(i) for i in range(min(num_gpus, found))]
        if num_gpus > found:
            print(
                f"d2l.Trainer: num_gpus={num_gpus} asked for, {found} found; "
                f"training on {self.device}",
                file=sys.stderr,
            )
        self.train_seconds = 0.0  # cnnlab's: time spent in training batches, for a rate
        self.train_examples = 0

    @property
    def device(self) -> torch.device:
        return self.gpus[0] if self.gpus else cpu()

    def prepare_data(self, data: DataModule) -> None:
        if isinstance(data, FashionMNIST):
            data.device = self.device  # batches are gathered where the model trains
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = len(self.train_dataloader)  # type: ignore[arg-type]
        self.num_val_batches = (
            len(self.val_dataloader) if self.val_dataloader is not None else 0  # type: ignore[arg-type]
        )

    def prepare_model(self, model: Module) -> None:
        model.trainer = self
        model.board.xlim = [0, self.max_epochs]
        place(model, self.device)
        self.model = model

    def fit(self, model: Module, data: DataModule) -> None:
        self.prepare_data(data)
        self.prepare_model(model)
        self.optim = model.configure_optimizers()
        self.epoch = 0
        self.train_batch_idx = 0
        self.val_batch_idx = 0
        for epoch in range(self.max_epochs):
            self.epoch = epoch  # the model's plot reads it
            self.fit_epoch()

    def prepare_batch(self, batch: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        if self.gpus:
            return [a.to(self.gpus[0]) for a in batch]
        return batch

    def fit_epoch(self) -> None:
        self.model.train()
        start = time.perf_counter()
        finite = torch.ones((), dtype=torch.bool, device=self.device)  # read once an epoch
        for batch in self.train_dataloader:
            batch = self.prepare_batch(batch)
            loss = self.model.training_step(batch)
            finite &= torch.isfinite(loss.detach()).all()
            self.optim.zero_grad()
            with torch.no_grad():
                loss.backward()  # type: ignore[no-untyped-call]
                if self.gradient_clip_val > 0:
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
            self.train_examples += len(batch[-1])
        self.train_seconds += time.perf_counter() - start
        if not finite:
            lr = self.optim.param_groups[0]["lr"] if hasattr(self.optim, "param_groups") else 0.0
            raise diverged(self.epoch, None, lr)
        if self.val_dataloader is None:
            return
        self.model.eval()
        for batch in self.val_dataloader:
            with torch.no_grad():
                self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val: float, model: nn.Module) -> None:
        """Scale the gradients so that their global norm is at most ``grad_clip_val``
        (computed on the device: no host read per step)."""
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        factor = torch.clamp(grad_clip_val / norm, max=1.0)
        for g in grads:
            g.mul_(factor)


_count_gpus = num_gpus  # Trainer.__init__'s argument ``num_gpus`` hides the function
