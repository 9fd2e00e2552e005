import pytest
import torch
import torch.nn.functional as F

from cnnlab.ops import (
    avg_pool2d_as_conv,
    box_blur,
    corr2d,
    diagonal_edge,
    edge_at_angle,
    fit_kernel,
    horizontal_edge,
    max_pool2d,
    max_pool2d_via_relu,
    max_via_relu,
    second_derivative,
    vertical_edge,
)
from tests.ops.helpers import assert_matches_torch

EDGE_IMAGE = torch.ones(6, 8)
EDGE_IMAGE[:, 2:6] = 0


def test_diagonal_edge_image() -> None:
    # The exercise: the edge kernel on a diagonal line marks both of its sides.
    out = corr2d(torch.eye(6), vertical_edge())
    assert torch.equal(out, torch.eye(6)[:, :5] - torch.eye(6)[:, 1:])
    # The diagonal kernel sees change along the diagonal, so an anti-diagonal edge.
    upper_left = (torch.arange(6)[:, None] + torch.arange(6) < 6).float()
    response = corr2d(upper_left, diagonal_edge())
    i, j = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    assert torch.equal(response, ((i + j == 4) | (i + j == 5)).float())


def test_transposed_image_needs_the_transposed_kernel() -> None:
    assert torch.equal(corr2d(EDGE_IMAGE.t(), vertical_edge()), torch.zeros(8, 5))
    assert torch.equal(
        corr2d(EDGE_IMAGE.t(), horizontal_edge()), corr2d(EDGE_IMAGE, vertical_edge()).t()
    )


def test_edge_at_angle() -> None:
    image = torch.ones(8, 8)
    image[:, 4:] = 0  # a vertical edge
    assert corr2d(image, edge_at_angle(0)).abs().sum() > 0
    assert corr2d(image, edge_at_angle(90)).abs().sum() == 0
    assert torch.equal(edge_at_angle(90), edge_at_angle(0).t())
    torch.testing.assert_close(edge_at_angle(180), -edge_at_angle(0))


def test_second_derivative_and_blur() -> None:
    ramp = torch.arange(8.0).repeat(8, 1) * 3 + torch.arange(8.0)[:, None]  # linear in x and y
    assert corr2d(ramp, second_derivative()).abs().max() == 0
    spike = torch.zeros(5, 5)
    spike[2, 2] = 1
    assert corr2d(spike, second_derivative())[1, 1] == -4
    assert box_blur(3).sum() == pytest.approx(1.0)
    torch.testing.assert_close(
        corr2d(torch.full((5, 5), 7.0), box_blur(3)), torch.full((3, 3), 7.0)
    )
    with pytest.raises(ValueError, match="size must be positive, got 0"):
        box_blur(0)


def test_fit_kernel_learns_the_edge_kernel() -> None:
    target = corr2d(EDGE_IMAGE, vertical_edge())
    kernel, losses = fit_kernel(EDGE_IMAGE, target, (1, 2))
    assert len(losses) == 10 and losses[-1] < 0.05 < losses[0]
    torch.testing.assert_close(kernel, vertical_edge(), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match=r"maps a \(6, 8\) image to \(6, 7\)"):
        fit_kernel(EDGE_IMAGE, target.t(), (1, 2))


def test_fit_kernel_learns_a_diagonal_kernel() -> None:
    image = torch.rand(8, 8, generator=torch.Generator().manual_seed(1))
    kernel, _ = fit_kernel(image, corr2d(image, diagonal_edge()), (2, 2), steps=200, lr=3e-3)
    torch.testing.assert_close(kernel, diagonal_edge(), atol=0.05, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("kernel", "stride"), [(2, None), (3, 1), (2, 3)])
def test_pooling_exercises_match_torch(kernel: int, stride: int | None, dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 7, 6, dtype=dtype)
    assert_matches_torch(
        lambda t: avg_pool2d_as_conv(t, kernel, stride),
        lambda t: F.avg_pool2d(t, kernel, stride),
        [x],
    )
    torch.testing.assert_close(
        max_pool2d_via_relu(x, kernel, stride), F.max_pool2d(x, kernel, stride), rtol=0, atol=1e-6
    )


def test_max_via_relu() -> None:
    a, b = torch.randn(100), torch.randn(100)
    torch.testing.assert_close(max_via_relu(a, b), torch.maximum(a, b))


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), (3, 1, 0)])
def test_max_pool_ties_send_the_gradient_where_torch_does(
    kernel: int, stride: int | None, padding: int
) -> None:
    # Integers 0-2: ties within a window everywhere, and not only at the window's start.
    x = torch.randint(0, 3, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0)).double()
    assert_matches_torch(
        lambda t: max_pool2d(t, kernel, stride, padding),
        lambda t: F.max_pool2d(t, kernel, stride, padding),
        [x],
    )
