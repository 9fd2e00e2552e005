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
    warm = make_scheduler(optimizer, "warmup-cosine", 100)
    assert warm is not None
    factors = [warm.lr_lambdas[0](s) for s in range(100)]
    assert factors[0] == pytest.approx(1 / 25) and factors[24] == 1.0 and factors[99] < 0.01
    assert make_scheduler(optimizer, "constant", 100) is None


def test_one_cycle_cycles_the_rate_up_then_down_and_momentum_the_other_way() -> None:
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.5, momentum=0.9, nesterov=True)
    cycle = make_scheduler(optimizer, "onecycle", 100)
    assert cycle is not None
    rates, momenta = [], []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        weight.grad = torch.ones(1)
        optimizer.step()
        cycle.step()
    peak = rates.index(max(rates))
    assert rates[0] == pytest.approx(0.5 / 25) and max(rates) == pytest.approx(0.5)
    assert 25 <= peak <= 31 and rates[-1] < 1e-3
    assert momenta[0] == pytest.approx(0.9) and min(momenta) == pytest.approx(0.8)
    assert momenta.index(min(momenta)) == peak  # lowest momentum where the rate peaks
    assert momenta[-1] == pytest.approx(0.9, abs=1e-3)
    # the same shape as torch's OneCycleLR (its default 30%, /25 and /1e4, cosine)
    reference_weight = torch.zeros(1, requires_grad=True)
    reference = torch.optim.SGD([reference_weight], lr=0.5, momentum=0.9)
    torch_cycle = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.5, total_steps=100)
    theirs = []
    for _ in range(100):
        theirs.append(reference.param_groups[0]["lr"])
        reference.step()
        torch_cycle.step()
    assert rates == pytest.approx(theirs, rel=1e-6, abs=1e-9)
