"""Pooling layers with the constructor arguments of their ``torch.nn`` namesakes."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.ops import avg_pool2d, max_pool2d
from cnnlab.ops.correlate import Pair


class _Pool2d(nn.Module):
    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None,
        padding: Pair,
        ceil_mode: bool,
        unsupported: dict[str, object],
    ) -> None:
        super().__init__()
        if unsupported:
            options = ", ".join(f"{k}={v!r}" for k, v in unsupported.items())
            raise ValueError(
                f"cnnlab's {type(self).__name__} does not implement {options}; "
                f"use torch.nn.{type(self).__name__} for these"
            )
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """``torch.nn.MaxPool2d`` from scratch (dilation 1, no indices)."""

    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        dilation: Pair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        unsupported: dict[str, object] = {}
        if dilation not in (1, (1, 1)):
            unsupported["dilation"] = dilation
        if return_indices:
            unsupported["return_indices"] = True
        super().__init__(kernel_size, stride, padding, ceil_mode, unsupported)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AvgPool2d(_Pool2d):
    """``torch.nn.AvgPool2d`` from scratch (padding counted in the divisor, as by default)."""

    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        unsupported: dict[str, object] = {}
        if not count_include_pad:
            unsupported["count_include_pad"] = False
        if divisor_override is not None:
            unsupported["divisor_override"] = divisor_override
        super().__init__(kernel_size, stride, padding, ceil_mode, unsupported)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
