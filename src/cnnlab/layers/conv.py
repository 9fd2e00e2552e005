"""Convolution layers that hold parameters and call ``cnnlab.ops``."""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.ops import conv2d, corr2d
from cnnlab.ops.correlate import Pair, _pair


class Conv2D(nn.Module):
    """The book's single-channel convolution layer: ``corr2d(x, weight) + bias``.

    >>> layer = Conv2D((1, 2))
    >>> layer(torch.ones(6, 8)).shape
    torch.Size([6, 7])
    """

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        if min(kernel_size) < 1:
            raise ValueError(f"kernel_size must be positive, got {kernel_size!r}")
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return corr2d(x, self.weight) + self.bias


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` from scratch: the same constructor, initialisation and
    ``state_dict`` keys (``weight`` (O, C, kh, kw), ``bias`` (O,)), so the two swap freely.

    ``padding`` is an int, a pair, ``"valid"`` or ``"same"`` (stride 1; like torch, an odd
    total puts the extra row/column at the bottom/right). ``groups`` and padding modes other
    than zeros are not implemented.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair | str = 0,
        dilation: Pair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be positive, got {in_channels}, {out_channels}"
            )
        if groups != 1 or padding_mode != "zeros":
            raise ValueError(
                f"cnnlab's Conv2d supports groups=1 and padding_mode='zeros' only, got "
                f"groups={groups}, padding_mode={padding_mode!r}; use torch.nn.Conv2d for these"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, 1
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        if min(*self.kernel_size, *self.stride, *self.dilation) < 1:
            raise ValueError(
                f"kernel_size, stride and dilation must be positive, got {kernel_size!r}, "
                f"{stride!r}, {dilation!r}"
            )
        self.padding = self._padding(padding)
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = (
            nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        )
        self.reset_parameters()

    def _padding(self, padding: Pair | str) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) from torch's forms of ``padding``."""
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride {self.stride}")
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            (th, tw) = totals
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        ph, pw = _pair(padding, "padding")
        if min(ph, pw) < 0:
            raise ValueError(f"padding must be non-negative, got {padding!r}")
        return (ph, ph, pw, pw)

    def reset_parameters(self) -> None:
        """torch's default: weight kaiming-uniform with a=sqrt(5), bias U(+-1/sqrt(fan_in))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )
