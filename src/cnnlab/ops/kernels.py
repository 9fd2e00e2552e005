"""Hand-made kernels from the chapter and its exercises, and fitting a kernel by gradient
descent (the book's "learning a kernel"). Every kernel is a 2-D float tensor for ``corr2d``.
"""

from __future__ import annotations

import math

import torch

from cnnlab.ops.correlate import conv2d


def vertical_edge() -> torch.Tensor:
    """The book's [[1, -1]]: responds to vertical edges (a change from left to right).

    >>> vertical_edge()
    tensor([[ 1., -1.]])
    """
    return torch.tensor([[1.0, -1.0]])


def horizontal_edge() -> torch.Tensor:
    """[[1], [-1]]: the vertical-edge kernel transposed, for changes from top to bottom."""
    return vertical_edge().t()


def diagonal_edge() -> torch.Tensor:
    """[[1, 0], [0, -1]]: a change along the main diagonal."""
    return torch.tensor([[1.0, 0.0], [0.0, -1.0]])


def edge_at_angle(degrees: float) -> torch.Tensor:
    """A 3x3 kernel for edges across the direction ``degrees`` (0: left to right, like
    ``vertical_edge``; 90: top to bottom): the Sobel derivatives combined as
    cos(angle) * d/dx + sin(angle) * d/dy, a directional derivative.

    >>> edge_at_angle(0)
    tensor([[ 1.,  0., -1.],
            [ 2.,  0., -2.],
            [ 1.,  0., -1.]])
    """
    d_dx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    theta = math.radians(degrees)
    kernel = math.cos(theta) * d_dx + math.sin(theta) * d_dx.t()
    return kernel.where(kernel.abs() > 1e-12, torch.zeros(()))  # exact zeros at 0, 90, ...


def second_derivative() -> torch.Tensor:
    """The discrete Laplacian, d2/dx2 + d2/dy2: zero on flat and linear regions.

    >>> second_derivative()
    tensor([[ 0.,  1.,  0.],
            [ 1., -4.,  1.],
            [ 0.,  1.,  0.]])
    """
    return torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def box_blur(size: int = 3) -> torch.Tensor:
    """The integral over a size x size window, normalised: a box blur.

    >>> box_blur(2)
    tensor([[0.2500, 0.2500],
            [0.2500, 0.2500]])
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    return torch.full((size, size), 1.0 / size**2)


def fit_kernel(
    x: torch.Tensor,
    y: torch.Tensor,
    shape: tuple[int, int],
    *,
    lr: float = 3e-2,
    steps: int = 10,
    seed: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """Learn the kernel that maps image ``x`` to ``y`` (both 2-D) as the book does: a conv
    layer without bias, initial kernel uniform in +-1/sqrt(kh*kw) (``nn.Conv2d``'s default),
    summed squared error, plain gradient descent.

    Returns the kernel and the loss after each step.
    """
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"expected 2-D x and y, got {tuple(x.shape)} and {tuple(y.shape)}")
    expected = (x.shape[0] - shape[0] + 1, x.shape[1] - shape[1] + 1)
    if tuple(y.shape) != expected:
        raise ValueError(
            f"a {shape[0]}x{shape[1]} kernel maps a {tuple(x.shape)} image to {expected}, "
            f"but y has shape {tuple(y.shape)}"
        )
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(shape[0] * shape[1])
    kernel = torch.rand(1, 1, *shape, generator=generator, dtype=x.dtype) * 2 * bound - bound
    kernel.requires_grad_()
    losses = []
    for _ in range(steps):
        loss = ((conv2d(x[None, None], kernel)[0, 0] - y) ** 2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        with torch.no_grad():
            kernel -= lr * kernel.grad  # type: ignore[operator]
            kernel.grad = None
        losses.append(loss.item())
    return kernel.detach()[0, 0], losses
