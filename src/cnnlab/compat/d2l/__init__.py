"""The book's helper library for the convolutional-network chapter, on top of cnnlab.

Change the chapter's ``from d2l import torch as d2l`` to ``from cnnlab.compat import d2l``
and its PyTorch cells run unchanged, in both editions of the book:

- the tensor names the cells are written with (``d2l.zeros``, ``d2l.reduce_sum``, ...):
  :mod:`~cnnlab.compat.d2l.tensors`;
- the Chinese edition's functions (``train_ch6``, ``load_data_fashion_mnist``,
  ``Animator``, ...): :mod:`~cnnlab.compat.d2l.classic`;
- the English edition's classes (``Module``, ``Classifier``, ``Trainer``,
  ``FashionMNIST``, ``ProgressBoard``, ``LeNet``, ...): :mod:`~cnnlab.compat.d2l.oo`;
- the Modern CNNs chapter's ``ResNeXtBlock``: :mod:`~cnnlab.compat.d2l.modern`.

What differs is underneath: the data comes from cnnlab's verified loader (files the
book's library put in ``../data`` are used; a first download goes to cnnlab's cache, not
the working directory; no worker processes), batches are gathered and resized on
the training device, denormals are flushed on a CPU, and figures redraw in a notebook
and are written to a PNG file elsewhere. Names from the rest of the book raise an
``AttributeError`` that says so.

>>> from cnnlab.compat import d2l
>>> d2l.corr2d(d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]),
...            d2l.tensor([[0.0, 1.0], [2.0, 3.0]]))
tensor([[19., 25.],
        [37., 43.]])
"""

from __future__ import annotations

from typing import NoReturn

from cnnlab.compat.d2l import classic, tensors
from cnnlab.compat.d2l.classic import *  # noqa: F403
from cnnlab.compat.d2l.modern import ResNeXtBlock
from cnnlab.compat.d2l.oo import (
    Classifier,
    DataModule,
    FashionMNIST,
    HyperParameters,
    LeNet,
    Module,
    ProgressBoard,
    Trainer,
    add_to_class,
    cpu,
    gpu,
    init_cnn,
    num_gpus,
)
from cnnlab.compat.d2l.tensors import *  # noqa: F403

__all__ = [
    *classic.__all__,
    *tensors.__all__,
    "Classifier",
    "DataModule",
    "FashionMNIST",
    "HyperParameters",
    "LeNet",
    "Module",
    "ProgressBoard",
    "ResNeXtBlock",
    "Trainer",
    "add_to_class",
    "cpu",
    "gpu",
    "init_cnn",
    "num_gpus",
]

COVERED = (
    "two chapters of both editions: convolutional networks (conv-layer, padding-and-strides, "
    "channels, pooling, lenet) and modern CNNs (alexnet, vgg, nin, googlenet, batch-norm, "
    "resnet, densenet, cnn-design), the helpers they call from earlier chapters and the "
    "book's tensor names"
)


def __getattr__(name: str) -> NoReturn:
    if name.startswith("__"):  # the import system's own probes
        raise AttributeError(name)
    raise AttributeError(
        f"cnnlab.compat.d2l has no {name!r}: it covers {COVERED}. For the rest of the book "
        "install the book's own library (pip install d2l) and use "
        "`from d2l import torch as d2l`."
    )
