"""One training step (train_step), and how a run takes it (Steps): when the CUDA graphs
apply, and which batch lengths they serve (runs without a GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.training import step
from cnnlab.training.step import Steps, graphable, train_step

CUDA = torch.device("cuda", 0)


def test_a_step_follows_the_mean_loss_gradient_and_returns_the_sums() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    twin = nn.Linear(4, 3)
    twin.load_state_dict(net.state_dict())
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss_sum, correct = train_step(net, torch.optim.SGD(net.parameters(), lr=0.5), x, y, 1 / 8)
    logits = twin(x)
    F.cross_entropy(logits, y).backward()
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.5 * p.grad  # type: ignore[operator]
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(loss_sum, F.cross_entropy(logits, y, reduction="sum").detach())
    assert correct.item() == (logits.argmax(1) == y).sum().item()
    assert not loss_sum.requires_grad


def test_graphs_only_for_the_books_recipe_in_one_cuda_process() -> None:
    book = {
        "device": CUDA,
        "processes": 1,
        "num_examples": 60_000,
        "batch_size": 256,
        "optimizer": "sgd",
        "schedule": "constant",
        "augmented": False,
    }
    assert graphable(**book)  # type: ignore[arg-type]
    for change in (
        {"device": torch.device("cpu")},
        {"processes": 2},
        {"num_examples": 100},
        {"optimizer": "momentum"},
        {"schedule": "cosine"},
        {"augmented": True},
    ):
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
    taken: list[tuple[int, bool]] = []  # (count, with the graphs' forward)

    def take(index: torch.Tensor, count: int, forward: object = None) -> tuple[torch.Tensor, ...]:
        taken.append((count, forward is not None))
        return torch.tensor(float(len(index))), torch.tensor(0)

    monkeypatch.setattr(step, "fast_forward", lambda model, compile: model)
    steps = Steps(take)
    steps.capture([16, 4], model, model, torch.optim.SGD(model.parameters(), lr=0.1), ())
    assert sorted(steps.graphs) == [4, 16]
    assert steps(torch.arange(16), 16).item() == 16 and steps(torch.arange(4), 4).item() == 4
    assert steps(torch.arange(7), 7).item() == 7  # no graph of 7: eager
    assert replayed == [16, 4] and taken == [(16, True), (4, True), (7, False)]


def test_a_run_graphs_its_full_batch_and_its_last_one_unless_told_not_to() -> None:
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.step import graph_lengths

    assert graph_lengths(TrainConfig(), CUDA, 1, 1000) == [232, 256]  # 3 full, then 232
    assert graph_lengths(TrainConfig(), CUDA, 1, 1024) == [256]
    assert graph_lengths(TrainConfig(fast=False), CUDA, 1, 1000) == []
    assert graph_lengths(TrainConfig(augment="flip"), CUDA, 1, 1000) == []
    assert graph_lengths(TrainConfig(), torch.device("cpu"), 1, 1000) == []
