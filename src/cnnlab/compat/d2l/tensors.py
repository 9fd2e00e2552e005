"""The tensor names the book writes its cells with (``d2l.zeros``, ``d2l.reduce_sum``, ...).

The book's library is written once for four frameworks, so its cells call tensor
functions through framework-neutral names. For PyTorch each name is either a torch
function under another name, or a tensor method called as a function:
``d2l.reduce_sum(X, dim=0)`` is ``X.sum(dim=0)``, ``d2l.transpose(X)`` is ``X.t()``.

>>> X = tensor([[0.0, 1.0], [2.0, 3.0]])
>>> reduce_sum(X), reshape(X, (4,)).tolist(), transpose(X)[0].tolist()
(tensor(6.), [0.0, 1.0, 2.0, 3.0], [0.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

nn_Module = nn.Module

# dtypes
float32, int32, int64 = torch.float32, torch.int32, torch.int64

# torch functions under the book's names (most keep torch's own name)
tensor = torch.tensor
zeros, ones, zeros_like, ones_like, eye = (
    torch.zeros,
    torch.ones,
    torch.zeros_like,
    torch.ones_like,
    torch.eye,
)
arange, linspace, meshgrid = torch.arange, torch.linspace, torch.meshgrid
normal, rand, randn = torch.normal, torch.rand, torch.randn
exp, log, sigmoid, abs = torch.exp, torch.log, torch.sigmoid, torch.abs
sin, sinh, cos, cosh, tanh = torch.sin, torch.sinh, torch.cos, torch.cosh, torch.tanh
matmul, batch_matmul = torch.matmul, torch.bmm
concat, stack = torch.cat, torch.stack


def _method(name: str) -> Callable[..., Any]:
    """``f(x, *args, **kwargs)`` that calls ``x.<name>(*args, **kwargs)``."""

    def call(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(x, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``x.{name}(*args, **kwargs)``, called as a function."
    return call


# tensor methods called as functions: the book's name, and the method it stands for
reshape = _method("reshape")
to = _method("to")
reduce_sum = _method("sum")
reduce_mean = _method("mean")
argmax = _method("argmax")
astype = _method("type")  # d2l.astype(x, d2l.float32) is x.type(torch.float32)
transpose = _method("t")  # a matrix transpose, as the book's edge-detection cell needs
expand_dims = _method("unsqueeze")
swapaxes = _method("swapaxes")
repeat = _method("repeat")
size = _method("numel")  # the number of elements, as the book's metric counts examples


def numpy(x: torch.Tensor, *args: Any, **kwargs: Any) -> np.ndarray:
    """``x`` as a NumPy array, detached from the graph (on the CPU, as the book's)."""
    return x.detach().numpy(*args, **kwargs)


__all__ = [
    "abs",
    "arange",
    "argmax",
    "astype",
    "batch_matmul",
    "concat",
    "cos",
    "cosh",
    "exp",
    "expand_dims",
    "eye",
    "float32",
    "int32",
    "int64",
    "linspace",
    "log",
    "matmul",
    "meshgrid",
    "nn_Module",
    "normal",
    "numpy",
    "ones",
    "ones_like",
    "rand",
    "randn",
    "reduce_mean",
    "reduce_sum",
    "repeat",
    "reshape",
    "sigmoid",
    "sin",
    "sinh",
    "size",
    "stack",
    "swapaxes",
    "tanh",
    "tensor",
    "to",
    "transpose",
    "zeros",
    "zeros_like",
]
