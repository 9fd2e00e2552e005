"""Choosing the step (runs without a GPU): when the CUDA graphs apply, and which batch
lengths they serve."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.accel import step
from cnnlab.accel.step import GraphedSteps, Step, graphable

CUDA = torch.device("cuda", 0)


def test_graphs_only_for_the_books_recipe_in_one_cuda_process() -> None:
    book = {"device": CUDA, "processes": 1, "num_examples": 60_000, "batch_size": 256,
            "optimizer": "sgd", "schedule": "constant", "augmented": False}  # fmt: skip
    assert graphable(**book)  # type: ignore[arg-type]
    for change in ({"device": torch.device("cpu")}, {"processes": 2}, {"num_examples": 100},
                   {"optimizer": "momentum"}, {"schedule": "cosine"}, {"augmented": True}):  # fmt: skip
        assert not graphable(**{**book, **change}), change  # type: ignore[arg-type]


def test_captured_lengths_replay_and_the_rest_run_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    replayed: list[int] = []

    class FakeGraph:  # records nothing: calls the step, as a replay would compute it
        def __init__(self, fn, count, device, model, optimizer, state):  # type: ignore[no-untyped-def]
            self.fn, self.count = fn, count

        def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            replayed.append(self.count)
            return self.fn(index)

    monkeypatch.setattr(step, "GraphedStep", FakeGraph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    model = nn.Linear(2, 2)
    scales: list[float] = []

    def record(index: torch.Tensor, scale: float, forward: object) -> tuple[torch.Tensor, ...]:
        scales.append(scale)
        return torch.tensor(float(len(index))), torch.tensor(0)

    eager_calls: list[int] = []
    steps = GraphedSteps(lambda index, count: eager_calls.append(count) or torch.tensor(-1.0),
                         record, model, model, torch.optim.SGD(model.parameters(), lr=0.1),
                         (), counts=[16, 4])  # fmt: skip
    assert steps.prepare() and not steps.prepare()  # captured once
    assert steps(torch.arange(16), 16).item() == 16 and steps(torch.arange(4), 4).item() == 4
    assert steps(torch.arange(7), 7).item() == -1  # no graph of 7: eager
    assert replayed == [16, 4] and eager_calls == [7] and scales == [1 / 16, 1 / 4]
    plain = Step(lambda index, count: torch.tensor(float(count)))
    assert not plain.prepare() and plain(torch.arange(3), 3).item() == 3
