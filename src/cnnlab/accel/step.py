"""The trainer's step, accelerated where it can be: one callable chosen once per run.

``step(index, count)`` trains on the examples ``index`` of a global batch of ``count`` and
returns this process's summed loss. On CUDA, for the book's recipe in one process, the
full batch and the epoch's last, smaller one are replayed from captured CUDA graphs (the
first block as fused Triton kernels where it applies, matrix products in TF32); every
other case runs the eager step it wraps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnlab.accel.cuda_graph import GraphedStep, tf32_matmuls
from cnnlab.accel.fused import fast_forward

Forward = Callable[[torch.Tensor], torch.Tensor]
# (index, 1 / count, forward or None) -> (summed loss, number correct): one optimizer step
Record = Callable[[torch.Tensor, float, Forward | None], tuple[torch.Tensor, torch.Tensor]]


def graphable(device: torch.device, processes: int, num_examples: int, batch_size: int,
              optimizer: str, schedule: str, augmented: bool) -> bool:  # fmt: skip
    """Whether a run's step can be replayed from CUDA graphs: on CUDA, in one process, with
    a full batch to capture; the graph bakes in the learning rate and needs the optimizer's
    state to exist before capture, so plain SGD at a constant rate (the book's recipe), and
    no augmentation (its random draws change every step).

    >>> graphable(torch.device("cpu"), 1, 60_000, 256, "sgd", "constant", False)
    False
    """
    return (
        device.type == "cuda" and processes == 1 and num_examples >= batch_size
        and optimizer == "sgd" and schedule == "constant" and not augmented
    )  # fmt: skip


def _bound(record: Record, scale: float, forward: Forward | None
           ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    return lambda index: record(index, scale, forward)


class Step:
    """The eager step: ``eager(index, count)``; ``prepare()`` has nothing to do."""

    capture_seconds = 0.0

    def __init__(self, eager: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
        self.eager = eager

    def prepare(self) -> bool:
        """Work to do once before training (timed apart from it); True if it did some."""
        return False

    def __call__(self, index: torch.Tensor, count: int) -> torch.Tensor:
        return self.eager(index, count)


class GraphedSteps(Step):
    """Steps of the captured batch lengths replayed from CUDA graphs, the rest eager."""

    def __init__(
        self, eager: Callable[[torch.Tensor, int], torch.Tensor], record: Record,
        model: nn.Module, forward_model: nn.Module, optimizer: torch.optim.Optimizer,
        state: Sequence[torch.Tensor], counts: Sequence[int], compile: bool = False,
    ) -> None:  # fmt: skip
        """``record`` is the step a graph records; ``model`` holds the weights and
        ``forward_model`` runs them (it may be a view of ``model`` with its layers
        reordered); ``state``: tensors ``record`` updates in place besides the weights and
        the optimizer's; ``counts``: the batch lengths to capture."""
        super().__init__(eager)
        self.record, self.model, self.forward_model = record, model, forward_model
        self.optimizer, self.state, self.counts, self.compile = optimizer, state, counts, compile
        self.graphs: dict[int, GraphedStep] = {}  # by batch length

    def prepare(self) -> bool:
        """Capture the graphs (the first time)."""
        if self.graphs:
            return False
        start = time.perf_counter()
        device = next(self.model.parameters()).device
        forward = fast_forward(self.forward_model, self.compile)
        with tf32_matmuls():
            for count in self.counts:
                self.graphs[count] = GraphedStep(
                    _bound(self.record, 1 / count, forward), count, device, self.model,
                    self.optimizer, state=self.state,
                )  # fmt: skip
        torch.cuda.synchronize(device)
        self.capture_seconds = time.perf_counter() - start
        return True

    def __call__(self, index: torch.Tensor, count: int) -> torch.Tensor:
        graph = self.graphs.get(count)
        return graph(index)[0] if graph is not None else self.eager(index, count)
