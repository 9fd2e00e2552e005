"""The chapter's demonstrations, one function each, run by ``cnnlab demo NAME``.

Each returns a ``Demo``: the lines the chapter prints, and a figure where a picture helps
(writing it is the caller's job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab import ops
from cnnlab.data import load_dataset
from cnnlab.viz import kinds

# The book's 6x8 image: white (1) with a black (0) band in columns 2..5.
EDGE_IMAGE = torch.ones(6, 8)
EDGE_IMAGE[:, 2:6] = 0


@dataclass
class Demo:
    text: str
    figure: Figure | None = None


def edges() -> Demo:
    """Edge detection with K = [[1, -1]]: the book's image, its transpose, a diagonal line."""
    from cnnlab.viz import plot_panels

    k = ops.vertical_edge()
    diagonal = torch.eye(8)
    y, y_t, y_diag = (ops.corr2d(image, k) for image in (EDGE_IMAGE, EDGE_IMAGE.t(), diagonal))
    lines = [
        f"X =\n{EDGE_IMAGE}",
        f"K = {k}",
        f"corr2d(X, K): 1 where white turns black, -1 where black turns white\n{y}",
        f"corr2d(X.T, K): K only sees vertical edges\n{y_t}",
        "corr2d(X.T, K.T): the transposed kernel finds them again\n"
        f"{ops.corr2d(EDGE_IMAGE.t(), k.t())}",
        f"a diagonal line, corr2d(eye(8), K): both of its sides\n{y_diag}",
    ]
    figure = plot_panels(
        [
            ("X", EDGE_IMAGE),
            ("corr2d(X, K)", y),
            ("X.T", EDGE_IMAGE.t()),
            ("corr2d(X.T, K)", y_t),
            ("eye(8)", diagonal),
            ("corr2d(eye, K)", y_diag),
        ],
        "edge detection with K = [[1, -1]]",
    )
    return Demo("\n\n".join(lines), figure)


def _noise(size: int) -> torch.Tensor:
    """A fixed random image: every kernel entry leaves a trace in it, so any kernel is learnable."""
    return torch.rand(size, size, generator=torch.Generator().manual_seed(0))


# What learn_kernel can learn: the target kernel, the image it learns from, lr and steps
# (the summed squared error grows with the image, so larger images need a smaller lr).
TARGETS: dict[str, tuple[torch.Tensor, torch.Tensor, float, int]] = {
    "vertical": (ops.vertical_edge(), EDGE_IMAGE, 3e-2, 10),
    "horizontal": (ops.horizontal_edge(), EDGE_IMAGE.t(), 3e-2, 10),
    "diagonal": (ops.diagonal_edge(), _noise(8), 3e-3, 200),
    "laplacian": (ops.second_derivative(), _noise(10), 2e-3, 300),
}


def learn_kernel(
    kernel: str = "vertical", steps: int | None = None, lr: float | None = None, seed: int = 0
) -> Demo:
    """Learn a kernel from an image and its filtered version by gradient descent (the book:
    a 1x2 kernel from the edge image, lr 3e-2, 10 steps, loss every 2 steps)."""
    if kernel not in TARGETS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of: {', '.join(TARGETS)}")
    target, x, default_lr, default_steps = TARGETS[kernel]
    steps = default_steps if steps is None else steps
    lr = default_lr if lr is None else lr
    if steps < 1 or not lr > 0:
        raise ValueError(f"steps and lr must be positive, got steps={steps}, lr={lr}")
    learned, losses = ops.fit_kernel(
        x, ops.corr2d(x, target), (target.shape[0], target.shape[1]), lr=lr, steps=steps, seed=seed
    )
    every = max(1, steps // 5)
    lines = [f"epoch {i}, loss {losses[i - 1]:.3f}" for i in range(every, steps + 1, every)]
    lines += [f"learned kernel:\n{learned}", f"target kernel:\n{target}"]
    return Demo("\n".join(lines))


def kernels(
    index: int = 0, data_dir: str | Path | None = None, offline: bool | None = None
) -> Demo:
    """The hand-made kernels on a real Fashion-MNIST test image, side by side."""
    from cnnlab.viz import plot_panels

    _, test = load_dataset("fashion-mnist", data_dir, offline=offline)
    if not 0 <= index < len(test.labels):
        raise ValueError(f"index must be in [0, {len(test.labels)}), got {index}")
    image = torch.from_numpy(test.images[index]).float() / 255
    chosen = {
        "vertical edge": ops.vertical_edge(),
        "horizontal edge": ops.horizontal_edge(),
        "diagonal edge": ops.diagonal_edge(),
        "edge at 45 deg": ops.edge_at_angle(45),
        "2nd derivative": ops.second_derivative(),
        "box blur 5x5": ops.box_blur(5),
    }
    panels = [(f"test image {index}", image)]
    lines = [f"Fashion-MNIST test image {index}, 28x28, pixels in [0, 1]"]
    for name, k in chosen.items():
        out = ops.corr2d(image, k)
        panels.append((name, out))
        lines.append(
            f"{name:<16} kernel {k.shape[0]}x{k.shape[1]} -> {out.shape[0]}x{out.shape[1]}, "
            f"values in [{out.min():.2f}, {out.max():.2f}]"
        )
    return Demo("\n".join(lines), plot_panels(panels, "hand-made kernels"))


def padding_stride() -> Demo:
    """The chapter's shape examples on an 8x8 input, computed twice: by conv2d on a real
    tensor and by the shape arithmetic."""
    x = torch.rand(1, 1, 8, 8)
    cases: list[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]]] = [
        ("kernel 3, padding 1", (3, 3), (1, 1), (1, 1)),
        ("kernel (5, 3), padding (2, 1)", (5, 3), (2, 1), (1, 1)),
        ("kernel 3, padding 1, stride 2", (3, 3), (1, 1), (2, 2)),
        ("kernel (3, 5), padding (0, 1), stride (3, 4)", (3, 5), (0, 1), (3, 4)),
    ]
    lines = []
    for name, kernel, padding, stride in cases:
        out = ops.conv2d(x, torch.rand(1, 1, *kernel), stride=stride, padding=padding)
        h, w = ops.trace((8, 8), [ops.Layer("conv", kernel, stride, padding)])[0].size
        lines.append(
            f"8x8 input, {name}: conv2d gives {out.shape[2]}x{out.shape[3]}, the formula {h}x{w}"
        )
    return Demo("\n".join(lines))


def channels() -> Demo:
    """Several input channels, several output channels, and the 1x1 convolution."""
    x = torch.stack([torch.arange(9.0).view(3, 3), torch.arange(1.0, 10.0).view(3, 3)])
    k = torch.stack([torch.tensor([[0.0, 1], [2, 3]]), torch.tensor([[1.0, 2], [3, 4]])])
    k3 = torch.stack([k, k + 1, k + 2])
    x1, k1 = torch.normal(0, 1, (3, 3, 3)), torch.normal(0, 1, (2, 3, 1, 1))
    same = float((ops.corr2d_1x1(x1, k1) - ops.corr2d_multi_in_out(x1, k1)).abs().sum()) < 1e-6
    lines = [
        f"corr2d_multi_in(X, K):\n{ops.corr2d_multi_in(x, k)}",
        f"K.shape with 3 output channels: {tuple(k3.shape)}",
        f"corr2d_multi_in_out(X, K):\n{ops.corr2d_multi_in_out(x, k3)}",
        f"1x1 convolution as a matrix product equals the general routine: {same}",
    ]
    return Demo("\n\n".join(lines))


def pooling() -> Demo:
    """Max and average pooling: the chapter's examples, with padding, stride and channels."""
    x = torch.arange(9.0).view(1, 3, 3)
    x16 = torch.arange(16.0).view(1, 1, 4, 4)
    lines = [
        f"max pool 2x2, stride 1:\n{ops.max_pool2d(x, 2, stride=1)[0]}",
        f"avg pool 2x2, stride 1:\n{ops.avg_pool2d(x, 2, stride=1)[0]}",
        f"X:\n{x16}",
        f"max pool 3 (stride defaults to the window):\n{ops.max_pool2d(x16, 3)}",
        f"max pool 3, padding 1, stride 2:\n{ops.max_pool2d(x16, 3, padding=1, stride=2)}",
        f"max pool (2, 3), stride (2, 3), padding (0, 1):\n"
        f"{ops.max_pool2d(x16, (2, 3), stride=(2, 3), padding=(0, 1))}",
        f"two channels, X and X + 1: max pool 3, padding 1, stride 2:\n"
        f"{ops.max_pool2d(torch.cat([x16, x16 + 1], 1), 3, padding=1, stride=2)}",
    ]
    return Demo("\n\n".join(lines))


DEMOS: dict[str, Callable[..., Demo]] = {
    "edges": edges,
    "learn-kernel": learn_kernel,
    "kernels": kernels,
    "padding-stride": padding_stride,
    "channels": channels,
    "pooling": pooling,
}


assert tuple(DEMOS) == kinds.DEMOS and tuple(TARGETS) == kinds.LEARNED_KERNELS  # --help's lists


def run_demo(name: str, **options: Any) -> Demo:
    """``DEMOS[name](**options)``, with a clear error for an unknown name."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of: {', '.join(DEMOS)}")
    return DEMOS[name](**options)
