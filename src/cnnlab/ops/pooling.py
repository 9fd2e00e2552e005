"""Max and average pooling with torch's semantics: stride defaults to the window, padding
and ``ceil_mode`` as in ``F.max_pool2d`` / ``F.avg_pool2d`` (count_include_pad=True)."""

from __future__ import annotations

import torch

from cnnlab.ops.correlate import Pair, _pair, conv2d, pad2d
from cnnlab.ops.shapes import conv_output_size


def _windows(
    x: torch.Tensor, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool, fill: float
) -> torch.Tensor:
    """The pooling windows (..., H_out, W_out, kh, kw), padding filled with ``fill``."""
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    kh, kw = _pair(kernel, "kernel_size")
    sh, sw = _pair(stride if stride is not None else kernel, "stride")
    ph, pw = _pair(padding, "padding")
    if min(kh, kw, sh, sw) < 1:
        raise ValueError(f"kernel_size and stride must be positive, got {kernel!r}, {stride!r}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding {padding!r} must be at most half the kernel size {kernel!r} (as in torch)"
        )
    h, w = x.shape[-2:]
    ho = conv_output_size(h, kh, sh, ph, ceil_mode=ceil_mode)
    wo = conv_output_size(w, kw, sw, pw, ceil_mode=ceil_mode)
    # Extra bottom/right padding lets ceil_mode's last window run past the input.
    extra_h = max(0, (ho - 1) * sh + kh - h - 2 * ph)
    extra_w = max(0, (wo - 1) * sw + kw - w - 2 * pw)
    xp = pad2d(x, (ph, ph + extra_h, pw, pw + extra_w), value=fill)
    windows = xp.unfold(-2, kh, sh).unfold(-2, kw, sw)  # (..., H_out', W_out', kh, kw)
    return windows[..., :ho, :wo, :, :]


def _tiles(
    x: torch.Tensor, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool
) -> torch.Tensor | None:
    """When the windows tile the input (stride = kernel, no padding; LeNet's case), a view
    (..., H_out, kh, W_out, kw) of x: cheaper than a copy of the windows. Else None."""
    kh, kw = _pair(kernel, "kernel_size")
    if _pair(stride if stride is not None else kernel, "stride") != (kh, kw):
        return None
    if _pair(padding, "padding") != (0, 0) or x.dim() not in (3, 4):
        return None
    h, w = x.shape[-2:]
    ho = conv_output_size(h, kh, kh, 0, ceil_mode=ceil_mode)
    wo = conv_output_size(w, kw, kw, 0, ceil_mode=ceil_mode)
    if ho * kh > h or wo * kw > w:
        return None  # ceil_mode's last window runs past the input
    return x[..., : ho * kh, : wo * kw].reshape(*x.shape[:-2], ho, kh, wo, kw)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Maximum over each window, per channel; padding never wins (it is -inf).

    >>> max_pool2d(torch.arange(9.).view(1, 3, 3), 2, stride=1)
    tensor([[[4., 5.],
             [7., 8.]]])
    """
    # The maximum of each window row, then of those: no copy of the windows, and on ties
    # (all-zero windows after a ReLU) the gradient goes to the first maximum in row-major
    # order, the one element torch's pooling sends it to.
    tiles = _tiles(x, kernel_size, stride, padding, ceil_mode)
    if tiles is not None:  # (..., H_out, kh, W_out, kw)
        return tiles.max(dim=-1).values.max(dim=-2).values
    windows = _windows(x, kernel_size, stride, padding, ceil_mode, float("-inf"))
    return windows.max(dim=-1).values.max(dim=-1).values


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Mean over each window, per channel. Like torch (count_include_pad=True), the zero
    padding counts in the divisor, but the part of a ceil_mode window past it does not.

    >>> avg_pool2d(torch.arange(9.).view(1, 3, 3), 2, stride=1)
    tensor([[[2., 3.],
             [5., 6.]]])
    """
    tiles = _tiles(x, kernel_size, stride, padding, ceil_mode)
    if tiles is not None:  # (..., H_out, kh, W_out, kw); one dim at a time is the faster sum
        return tiles.sum(dim=-1).sum(dim=-2) / (tiles.shape[-3] * tiles.shape[-1])
    windows = _windows(x, kernel_size, stride, padding, ceil_mode, 0.0)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else kernel_size, "stride")
    ph, pw = _pair(padding, "padding")
    h, w = x.shape[-2:]
    ho, wo = windows.shape[-4], windows.shape[-3]
    # Divisor: the window clipped to the padded input (torch's rule).
    starts_h = torch.arange(ho, device=x.device) * sh - ph
    starts_w = torch.arange(wo, device=x.device) * sw - pw
    count_h = (torch.clamp(starts_h + kh, max=h + ph) - starts_h).to(x.dtype)
    count_w = (torch.clamp(starts_w + kw, max=w + pw) - starts_w).to(x.dtype)
    return windows.sum(dim=(-2, -1)) / (count_h[:, None] * count_w[None, :])


def avg_pool2d_as_conv(
    x: torch.Tensor, kernel_size: int, stride: int | None = None
) -> torch.Tensor:
    """Average pooling as a convolution (an exercise): each channel correlated on its own
    with a constant kernel of 1 / (k*k).

    >>> avg_pool2d_as_conv(torch.arange(9.).view(1, 1, 3, 3), 2, stride=1)
    tensor([[[[2., 3.],
              [5., 6.]]]])
    """
    if x.dim() != 4:
        raise ValueError(f"expected x (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    kernel = torch.full(
        (1, 1, kernel_size, kernel_size), 1 / kernel_size**2, dtype=x.dtype, device=x.device
    )
    out = conv2d(x.reshape(n * c, 1, h, w), kernel, stride=stride or kernel_size)
    return out.reshape(n, c, *out.shape[2:])


def max_via_relu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """max(a, b) = b + ReLU(a - b): the maximum of two values from a ReLU (an exercise)."""
    return b + torch.relu(a - b)


def max_pool2d_via_relu(
    x: torch.Tensor, kernel_size: Pair, stride: Pair | None = None
) -> torch.Tensor:
    """Max pooling from ReLUs alone: the window's elements folded pairwise with
    ``max_via_relu``. Equals ``max_pool2d`` (padding 0); the gradient of a tie goes to the
    later element instead of the first.

    >>> max_pool2d_via_relu(torch.arange(9.).view(1, 3, 3), 2, stride=1)
    tensor([[[4., 5.],
             [7., 8.]]])
    """
    values = _windows(x, kernel_size, stride, 0, False, 0.0).flatten(-2).unbind(-1)
    out = values[0]
    for v in values[1:]:  # a loop over the k*k window positions, not over output pixels
        out = max_via_relu(out, v)
    return out
