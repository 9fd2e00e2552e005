"""One training step (Step), whole, and its replay (capture): when the CUDA graphs apply,
and which batch lengths they serve (runs without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Batches, ImageSet
from cnnlab.training import step
from cnnlab.training.checkpoint import TrainState
from cnnlab.training.step import Step, capture, graph_lengths, graphable

CUDA = torch.device("cuda", 0)


def tiny_batches(n: int = 8) -> Batches:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 2, 2), dtype=np.uint8)
    return Batches(ImageSet(images, np.arange(n, dtype=np.uint8) % 3), n)


def test_a_step_follows_the_mean_loss_gradient_and_adds_the_sums() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    twin = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    twin.load_state_dict(net.state_dict())
    batches, state = tiny_batches(), TrainState()
    state.loss_sum += 1.0  # the epoch's sums so far
    step = Step(batches, net, torch.optim.SGD(net.parameters(), lr=0.5), state)
    index = torch.tensor([0, 2, 4, 6])
    loss_sum, correct = step(index, count=8)  # half of a global batch of 8: half the mean
    x, y = batches.gather(index)
    logits = twin(x)
    (F.cross_entropy(logits, y, reduction="sum") / 8).backward()
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.5 * p.grad  # type: ignore[operator]
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(loss_sum, F.cross_entropy(logits, y, reduction="sum").detach())
    assert correct.item() == (logits.argmax(1) == y).sum().item()
    assert not loss_sum.requires_grad
    torch.testing.assert_close(state.loss_sum, 1.0 + loss_sum)
    assert state.correct.item() == correct.item()


def test_an_augmented_step_draws_from_the_seed_step_and_rank() -> None:
    torch.manual_seed(0)
    seen: list[torch.Tensor] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x.flatten(1)[:, :3] * weight

    weight = torch.ones(3, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.0)
    index = torch.arange(8)
    for rank, step_number in ((0, 5), (0, 5), (1, 5), (0, 6)):
        state = TrainState(step=step_number)
        Step(tiny_batches(), net, optimizer, state, augmentations=("flip", "erase"), rank=rank)(
            index, 8
        )
    assert torch.equal(seen[0], seen[1])  # the same (seed, step, rank): the same draw
    assert not torch.equal(seen[0], seen[2]) and not torch.equal(seen[0], seen[3])


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


def test_captured_lengths_replay_the_step_with_the_fast_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replayed: list[int] = []

    class FakeGraph:  # records nothing: calls the step, as a replay would compute it
        def __init__(self, fn, count, device, model, optimizer, state):  # type: ignore[no-untyped-def]
            self.fn, self.count = fn, count

        def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            replayed.append(self.count)
            return self.fn(index)  # type: ignore[no-any-return]

    monkeypatch.setattr(step, "GraphedStep", FakeGraph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    forwards: list[str] = []

    def fast(model: nn.Module, compile: bool):  # type: ignore[no-untyped-def]
        return lambda x: forwards.append("fast") or model(x)

    monkeypatch.setattr(step, "fast_forward", fast)
    eager = Step(tiny_batches(16), model, torch.optim.SGD(model.parameters(), lr=0.1), TrainState())
    graphs, seconds = capture(eager, [8, 4], model, model, compile=False)
    assert sorted(graphs) == [4, 8] and seconds >= 0
    loss, _ = graphs[8](torch.arange(8))
    graphs[4](torch.arange(4))
    assert replayed == [8, 4] and forwards == ["fast", "fast"]
    assert eager.net is model  # the eager step keeps the model's own forward
    assert loss.item() > 0


def test_a_run_graphs_its_full_batch_and_its_last_one_unless_told_not_to() -> None:
    assert graph_lengths(256, 1000, True) == [232, 256]  # 3 full, then 232
    assert graph_lengths(256, 1024, True) == [256]
    assert graph_lengths(256, 1000, False) == []
