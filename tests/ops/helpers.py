"""One helper that checks a from-scratch op against torch: values and gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def assert_matches_torch(
    ours: Callable[..., torch.Tensor],
    theirs: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
) -> None:
    """Same forward values and same gradient for every input, within the dtype's tolerance
    (relative to the largest magnitude involved)."""
    tol = TOLERANCE[inputs[0].dtype]
    a_in = [t.detach().clone().requires_grad_() for t in inputs]
    b_in = [t.detach().clone().requires_grad_() for t in inputs]
    a, b = ours(*a_in), theirs(*b_in)
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))
    grad = torch.randn_like(b)
    a.backward(grad)
    b.backward(grad)
    for x, y in zip(a_in, b_in, strict=True):
        assert x.grad is not None and y.grad is not None
        scale = max(1.0, y.grad.abs().max().item())
        torch.testing.assert_close(x.grad, y.grad, rtol=tol, atol=tol * scale)
