"""Cross-correlation and convolution, from the book's pixel loop to a batched, strided,
padded, dilated conv2d: all differentiable, none with a Python loop over output pixels
(but the reference, which keeps the book's loop on purpose)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.ops.shapes import conv_output_size

Pair = int | tuple[int, int]
Pair2 = tuple[int, int]


def _pair(value: Pair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value!r}")
    return pair[0], pair[1]


def _check_2d(x: torch.Tensor, k: torch.Tensor) -> None:
    if x.dim() != 2 or k.dim() != 2:
        raise ValueError(f"expected 2-D X and K, got shapes {tuple(x.shape)} and {tuple(k.shape)}")
    if k.shape[0] > x.shape[0] or k.shape[1] > x.shape[1]:
        raise ValueError(f"kernel {tuple(k.shape)} is larger than the input {tuple(x.shape)}")


def corr2d_reference(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The book's 2-D cross-correlation, one output pixel at a time: the slow reference.

    >>> corr2d_reference(torch.arange(9.).view(3, 3), torch.tensor([[0., 1], [2, 3]]))
    tensor([[19., 25.],
            [37., 43.]])
    """
    _check_2d(x, k)
    h, w = k.shape
    rows = []
    for i in range(x.shape[0] - h + 1):
        rows.append(
            torch.stack([(x[i : i + h, j : j + w] * k).sum() for j in range(x.shape[1] - w + 1)])
        )
    return torch.stack(rows)


def corr2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """2-D cross-correlation: every kh x kw window of x (a strided view) times k, summed,
    as one matrix-vector product of the (H_out*W_out, kh*kw) windows and the flat kernel.

    >>> corr2d(torch.arange(9.).view(3, 3), torch.tensor([[0., 1], [2, 3]]))
    tensor([[19., 25.],
            [37., 43.]])
    """
    _check_2d(x, k)
    windows = x.unfold(0, k.shape[0], 1).unfold(1, k.shape[1], 1)  # (H_out, W_out, kh, kw)
    ho, wo = windows.shape[:2]
    return (windows.reshape(ho * wo, -1) @ k.reshape(-1)).view(ho, wo)


def conv2d_true(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """True (mathematical) convolution: cross-correlation with the kernel flipped both ways."""
    return corr2d(x, k.flip(0, 1))


def corr2d_multi_in(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """x (C, H, W), k (C, kh, kw): cross-correlate each channel with its slice, then sum."""
    if x.dim() != 3 or k.dim() != 3 or x.shape[0] != k.shape[0]:
        raise ValueError(
            f"expected x (C, H, W) and k (C, kh, kw) with equal C, got {tuple(x.shape)} and "
            f"{tuple(k.shape)}"
        )
    windows = x.unfold(1, k.shape[1], 1).unfold(2, k.shape[2], 1)  # (C, H_out, W_out, kh, kw)
    return torch.einsum("cijab,cab->ij", windows, k)


def corr2d_multi_in_out(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """x (C_in, H, W), k (C_out, C_in, kh, kw) -> (C_out, H_out, W_out)."""
    if k.dim() != 4:
        raise ValueError(f"expected k (C_out, C_in, kh, kw), got {tuple(k.shape)}")
    if x.dim() != 3 or x.shape[0] != k.shape[1]:
        raise ValueError(f"expected x ({k.shape[1]}, H, W) for this kernel, got {tuple(x.shape)}")
    windows = x.unfold(1, k.shape[2], 1).unfold(2, k.shape[3], 1)  # (C_in, H_out, W_out, kh, kw)
    return torch.einsum("cijab,ocab->oij", windows, k)


def corr2d_1x1(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution is a dense layer at every pixel: (C_out, C_in) @ (C_in, H*W)."""
    if k.dim() != 4 or k.shape[2:] != (1, 1) or x.dim() != 3 or x.shape[0] != k.shape[1]:
        raise ValueError(
            f"expected x (C_in, H, W) and k (C_out, C_in, 1, 1), got {tuple(x.shape)} and "
            f"{tuple(k.shape)}"
        )
    c, h, w = x.shape
    return (k.view(k.shape[0], c) @ x.reshape(c, h * w)).view(k.shape[0], h, w)


def corr2d_as_matmul(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cross-correlation as one matrix product, the matrix built explicitly (an exercise).

    Row r of the (H_out*W_out, H*W) matrix holds k at the pixels of output r's window.
    """
    _check_2d(x, k)
    (h, w), (kh, kw) = x.shape, k.shape
    ho, wo = h - kh + 1, w - kw + 1
    rows = torch.arange(ho * wo, device=x.device)
    oi, oj = rows // wo, rows % wo  # output coordinates of each row
    ki, kj = torch.meshgrid(
        torch.arange(kh, device=x.device), torch.arange(kw, device=x.device), indexing="ij"
    )
    cols = (oi[:, None, None] + ki) * w + (oj[:, None, None] + kj)  # (rows, kh, kw)
    matrix = torch.zeros(ho * wo, h * w, dtype=k.dtype, device=k.device)
    matrix = matrix.index_put((rows[:, None, None].expand_as(cols), cols), k.expand_as(cols))
    return (matrix @ x.reshape(h * w)).view(ho, wo)


def pad2d(
    x: torch.Tensor, padding: Pair | tuple[int, int, int, int], value: float = 0.0
) -> torch.Tensor:
    """Pad the last two dims: an int, (p_h, p_w) per side, or (top, bottom, left, right)."""
    if isinstance(padding, int):
        padding = (padding, padding)
    if len(padding) == 2:
        top = bottom = padding[0]
        left = right = padding[1]
    elif len(padding) == 4:
        top, bottom, left, right = padding
    else:
        raise ValueError(f"padding must be an int, a pair or 4 values, got {padding!r}")
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return F.pad(x, (left, right, top, bottom), value=value)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair | tuple[int, int, int, int] = 0,
    dilation: Pair = 1,
) -> torch.Tensor:
    """Batched cross-correlation like ``F.conv2d``: x (N, C, H, W), weight (O, C, kh, kw).

    Padding may be per side, ``(top, bottom, left, right)``. x is copied once into a
    batch-last (C, H, W, N) layout, so that one pixel of every image in the batch is one
    run in memory. For each output row, the windows become a (C*kh*kw, W_out*N) matrix,
    copied from a strided view (``Tensor.unfold``), and one batched matrix product with the
    (O, C*kh*kw) weight does all the arithmetic. The result is a permuted view, (N, O,
    H_out, W_out) in shape.
    """
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"expected x (N, C, H, W) and weight (O, C, kh, kw), got {tuple(x.shape)} and "
            f"{tuple(weight.shape)}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} channels but the weight expects {weight.shape[1]} "
            f"(weight shape {tuple(weight.shape)})"
        )
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1:
        raise ValueError(f"stride and dilation must be positive, got {stride!r} and {dilation!r}")
    xp = pad2d(x, padding)
    o, _, kh, kw = weight.shape
    ho = conv_output_size(xp.shape[2], kh, sh, 0, dh)  # raises a clear error if it does not fit
    wo = conv_output_size(xp.shape[3], kw, sw, 0, dw)
    batch_last = xp.permute(1, 2, 3, 0).contiguous()
    geometry = ((kh, kw), (sh, sw), (dh, dw), (ho, wo))
    rows: torch.Tensor = _RowProducts.apply(  # type: ignore[no-untyped-call]
        batch_last, weight.reshape(o, -1), geometry
    )
    out = rows.view(ho, o, wo, x.shape[0]).permute(3, 1, 0, 2)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class _RowProducts(torch.autograd.Function):
    """x (C, H, W, N) and a (O, C*kh*kw) weight -> (H_out, O, W_out*N): per output row, the
    weight times the (C*kh*kw, W_out*N) matrix of that row's windows, copied from a strided
    view of x; kernel, stride, dilation and (H_out, W_out) come checked by the caller.

    Products per row, not one product with a (C*kh*kw, H_out*W_out*N) matrix: for LeNet's
    conv2, MKL took 2.9 ms for the ten row products and 5.8 ms for the one (2-core AMD
    EPYC, 2026-11-23). The backward is written by hand: the weight's gradient is one
    batched product; the input's (col2im) adds each kernel offset's rows of the windows'
    gradient back onto the pixels that offset read, kh*kw strided adds of runs of N. With
    autograd through the view instead, conv2's forward and backward took 29 ms, not 14.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        geometry: tuple[Pair2, Pair2, Pair2, Pair2],
    ) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = geometry
        span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # a dilated window's extent
        windows = x.unfold(1, span_h, sh).unfold(2, span_w, sw)[..., ::dh, ::dw]
        c, n = x.shape[0], x.shape[3]  # windows: (C, H_out, W_out, N, kh, kw)
        cols = windows.permute(1, 0, 4, 5, 2, 3).reshape(ho, c * kh * kw, wo * n)
        ctx.save_for_backward(cols, weight)
        ctx.geometry = (x.shape, geometry)  # type: ignore[attr-defined]
        return torch.bmm(weight.expand(ho, *weight.shape), cols)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        cols, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        shape, ((kh, kw), (sh, sw), (dh, dw), (ho, wo)) = ctx.geometry  # type: ignore[attr-defined]
        c, h, w, n = shape
        grad = grad.contiguous()
        grad_weight = grad_x = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_weight = torch.bmm(cols, grad.transpose(1, 2)).sum(0).T
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_cols = torch.bmm(weight.T.expand(ho, *weight.T.shape), grad)
            grad_cols = grad_cols.view(ho, c, kh, kw, wo, n).permute(1, 2, 3, 0, 4, 5)
            grad_x = grad.new_zeros(c, h, w, n)
            height, width = sh * (ho - 1) + 1, sw * (wo - 1) + 1  # extent of one offset's pixels
            for a in range(kh):
                for b in range(kw):
                    top, left = a * dh, b * dw
                    pixels = grad_x[:, top : top + height : sh, left : left + width : sw]
                    pixels += grad_cols[:, a, b]
        return grad_x, grad_weight, None
