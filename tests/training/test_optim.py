"""Optimizers and schedules by name."""

from __future__ import annotations

import pytest
import torch

from cnnlab.training.optim import make_scheduler


def test_schedules() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    cosine = make_scheduler(optimizer, "cosine", 100)
    assert cosine is not None and cosine.lr_lambdas[0](0) == 1.0
    assert cosine.lr_lambdas[0](100) == pytest.approx(0.0)
    onecycle = make_scheduler(optimizer, "onecycle", 100)
    assert onecycle is not None
    factors = [onecycle.lr_lambdas[0](s) for s in range(100)]
    assert factors[0] == pytest.approx(1 / 25) and factors[24] == 1.0 and factors[99] < 0.01
    assert make_scheduler(optimizer, "constant", 100) is None
