"""LeNet's first block (conv with one input channel, sigmoid, 2x2 average pooling) as two
Triton kernels, forward and backward, for the CUDA fast path.

cuDNN runs this block as five kernels forward and backward (the convolution, its weight
gradient, the sigmoid, the pooling and their gradients), and at 6 channels of 28x28 its
convolution kernels are far from the GPU's limits. Here one program per image computes the
four convolution outputs under each pooling window, their sigmoid and the window's mean in
registers; the backward recomputes them (cheaper than storing them) and writes the image's
weight and bias gradients, which one deterministic sum over the batch adds up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only builds of PyTorch come without Triton
    triton = None


def fast_forward(
    model: nn.Module, compile: bool = False
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``model``'s forward for the CUDA graph: its first block fused when ``model`` starts
    with the book's block and Triton is available, the rest through ``torch.compile`` if
    asked. None where neither applies (use ``model`` itself)."""
    if not _starts_with_books_block(model):
        return torch.compile(model) if compile else None
    conv, rest = model[0], model[3:]  # type: ignore[index]
    rest = torch.compile(rest) if compile else rest
    return lambda x: rest(FirstBlock.apply(x, conv.weight, conv.bias))  # type: ignore[no-untyped-call]


def _starts_with_books_block(model: nn.Module) -> bool:
    """Conv2d(1, C, k odd, padding=k // 2), Sigmoid, AvgPool2d(2), then more layers."""
    if triton is None or not isinstance(model, nn.Sequential) or len(model) < 4:
        return False
    conv, act, pool = model[0], model[1], model[2]
    return (
        isinstance(conv, nn.Conv2d)
        and conv.in_channels == 1
        and conv.bias is not None
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.kernel_size[0] % 2 == 1
        and conv.padding == (conv.kernel_size[0] // 2,) * 2
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(act, nn.Sigmoid)
        and isinstance(pool, nn.AvgPool2d)
        and pool.kernel_size in (2, (2, 2))
        and pool.stride in (2, (2, 2))
        and pool.padding in (0, (0, 0))
        and not pool.ceil_mode
    )


class FirstBlock(torch.autograd.Function):
    """avg_pool2d(sigmoid(conv2d(x, weight, bias, padding=k // 2)), 2) for float32 CUDA
    tensors, x of shape (N, 1, H, W) with H and W even; no gradient for x."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"the fused first block needs an even image size, got {h}x{w}")
        x, weight, bias = x.contiguous(), weight.contiguous(), bias.contiguous()
        out = x.new_empty(n, weight.shape[0], h // 2, w // 2)
        _forward_kernel[(n,)](x, weight, bias, out, **_sizes(x, weight))
        ctx.save_for_backward(x, weight, bias)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor]:
        x, weight, bias = ctx.saved_tensors
        c, taps = weight.shape[0], weight[0].numel()
        partial = x.new_empty(x.shape[0], c * (taps + 1))  # per image: weight grads, bias grads
        _backward_kernel[(x.shape[0],)](
            x,
            weight,
            bias,
            grad.contiguous(),
            partial,
            **_sizes(x, weight),
            TAPS=triton.next_power_of_2(taps),
        )
        total = partial.sum(0)
        return None, total[: c * taps].view_as(weight), total[c * taps :]


def _sizes(x: torch.Tensor, weight: torch.Tensor) -> dict[str, int]:
    c, k = weight.shape[0], weight.shape[-1]
    h, w = x.shape[-2:]
    return {
        "H": h,
        "W": w,
        "C": c,
        "K": k,
        "CP": triton.next_power_of_2(c),
        "BLOCK": triton.next_power_of_2(h * w // 4),
    }


if triton is not None:

    @triton.jit
    def _preactivation(
        x_ptr,
        w_ptr,
        b_ptr,
        n,
        d: tl.constexpr,
        H: tl.constexpr,
        W: tl.constexpr,
        C: tl.constexpr,
        K: tl.constexpr,
        CP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """The conv outputs (CP, BLOCK) at offset d (0..3) inside every 2x2 pooling window."""
        pos = tl.arange(0, BLOCK)
        ch = tl.arange(0, CP)
        row, col = pos // (W // 2) * 2 + d // 2, pos % (W // 2) * 2 + d % 2
        z = tl.zeros([CP, BLOCK], tl.float32) + tl.load(b_ptr + ch, mask=ch < C, other=0.0)[:, None]
        for k in tl.static_range(K * K):
            r, s = row + k // K - K // 2, col + k % K - K // 2
            inside = (pos < H * W // 4) & (r >= 0) & (r < H) & (s >= 0) & (s < W)
            xv = tl.load(x_ptr + n * H * W + r * W + s, mask=inside, other=0.0)
            wv = tl.load(w_ptr + ch * K * K + k, mask=ch < C, other=0.0)
            z += wv[:, None] * xv[None, :]
        return z

    @triton.jit
    def _forward_kernel(
        x_ptr,
        w_ptr,
        b_ptr,
        out_ptr,
        H: tl.constexpr,
        W: tl.constexpr,
        C: tl.constexpr,
        K: tl.constexpr,
        CP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        n = tl.program_id(0)
        pooled = tl.zeros([CP, BLOCK], tl.float32)
        for d in tl.static_range(4):
            pooled += tl.sigmoid(_preactivation(x_ptr, w_ptr, b_ptr, n, d, H, W, C, K, CP, BLOCK))
        pos, ch = tl.arange(0, BLOCK), tl.arange(0, CP)
        keep = (ch < C)[:, None] & (pos < H * W // 4)[None, :]
        tl.store(out_ptr + (n * C + ch[:, None]) * (H * W // 4) + pos[None, :], pooled * 0.25, keep)

    @triton.jit
    def _backward_kernel(
        x_ptr,
        w_ptr,
        b_ptr,
        grad_ptr,
        partial_ptr,
        H: tl.constexpr,
        W: tl.constexpr,
        C: tl.constexpr,
        K: tl.constexpr,
        CP: tl.constexpr,
        TAPS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        n = tl.program_id(0)
        pos, ch, tap = tl.arange(0, BLOCK), tl.arange(0, CP), tl.arange(0, TAPS)
        valid = pos < H * W // 4
        keep = (ch < C)[:, None] & valid[None, :]
        grad = tl.load(grad_ptr + (n * C + ch[:, None]) * (H * W // 4) + pos[None, :], keep, 0.0)
        grad = grad * 0.25  # the pooling window's mean
        # The gradient at the conv output at offset d of every window (row 2i + d // 2,
        # column 2j + d % 2), through the recomputed sigmoid.
        y0 = tl.sigmoid(_preactivation(x_ptr, w_ptr, b_ptr, n, 0, H, W, C, K, CP, BLOCK))
        y1 = tl.sigmoid(_preactivation(x_ptr, w_ptr, b_ptr, n, 1, H, W, C, K, CP, BLOCK))
        y2 = tl.sigmoid(_preactivation(x_ptr, w_ptr, b_ptr, n, 2, H, W, C, K, CP, BLOCK))
        y3 = tl.sigmoid(_preactivation(x_ptr, w_ptr, b_ptr, n, 3, H, W, C, K, CP, BLOCK))
        g0, g1 = grad * y0 * (1 - y0), grad * y1 * (1 - y1)
        g2, g3 = grad * y2 * (1 - y2), grad * y3 * (1 - y3)
        db = tl.sum(g0 + g1 + g2 + g3, axis=1)
        # Weight gradient of tap k: the sum over the four offsets before one sum over the
        # image (a sum over lanes costs far more than a multiply-add).
        dw = tl.zeros([CP, TAPS], tl.float32)
        row, col = pos // (W // 2) * 2, pos % (W // 2) * 2
        for k in tl.static_range(K * K):
            r, s = row + k // K - K // 2, col + k % K - K // 2
            at = x_ptr + n * H * W + r * W + s
            row0, row1 = valid & (r >= 0) & (r < H), valid & (r >= -1) & (r < H - 1)
            col0, col1 = (s >= 0) & (s < W), (s >= -1) & (s < W - 1)
            acc = g0 * tl.load(at, mask=row0 & col0, other=0.0)[None, :]
            acc += g1 * tl.load(at + 1, mask=row0 & col1, other=0.0)[None, :]
            acc += g2 * tl.load(at + W, mask=row1 & col0, other=0.0)[None, :]
            acc += g3 * tl.load(at + W + 1, mask=row1 & col1, other=0.0)[None, :]
            dw += tl.where(tap[None, :] == k, tl.sum(acc, axis=1)[:, None], 0.0)
        row_ptr = partial_ptr + n * C * (K * K + 1)
        tl.store(
            row_ptr + ch[:, None] * K * K + tap[None, :],
            dw,
            (ch < C)[:, None] & (tap < K * K)[None, :],
        )
        tl.store(row_ptr + C * K * K + ch, db, ch < C)
