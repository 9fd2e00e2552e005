"""One training step, and how a run takes it: eagerly, or replayed from a CUDA graph.

:func:`train_step` is the whole step on a batch already in memory. :class:`Steps` is how a
run takes it on the examples ``index`` of a global batch: on CUDA, for the book's recipe in
one process (:func:`graphable`), the full batch and the epoch's last, smaller one are
replayed from captured CUDA graphs (the first block as fused Triton kernels where it
applies, matrix products in TF32); every other batch runs the step eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.accel.cuda_graph import GraphedStep, tf32_matmuls
from cnnlab.accel.fused import fast_forward
from cnnlab.data.augment import parse_augment
from cnnlab.device import autocast
from cnnlab.training.config import TrainConfig

Forward = Callable[[torch.Tensor], torch.Tensor]
# (index, count, forward or None) -> (summed loss, number correct), on the device
Take = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def train_step(
    net: Forward,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
    precision: str = "fp32",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y) through ``net``, the gradient that of the
    summed loss times ``scale`` (1 / the global batch's length: the mean); returns the
    batch's summed loss and number correct, on the device (no host synchronisation)."""
    with autocast(x.device, precision):
        logits = net(x)  # (batch, classes)
        loss_sum = F.cross_entropy(logits, y, reduction="sum", label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    (loss_sum * scale).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss_sum.detach(), (logits.argmax(dim=1) == y).sum()


def graphable(
    device: torch.device,
    processes: int,
    num_examples: int,
    batch_size: int,
    optimizer: str,
    schedule: str,
    augmented: bool,
) -> bool:
    """Whether a run's step can be replayed from CUDA graphs: on CUDA, in one process, with
    a full batch to capture; the graph bakes in the learning rate and needs the optimizer's
    state to exist before capture, so plain SGD at a constant rate (the book's recipe), and
    no augmentation (its random draws change every step).

    >>> graphable(torch.device("cpu"), 1, 60_000, 256, "sgd", "constant", False)
    False
    """
    return (
        device.type == "cuda"
        and processes == 1
        and num_examples >= batch_size
        and optimizer == "sgd"
        and schedule == "constant"
        and not augmented
    )


def graph_lengths(
    config: TrainConfig, device: torch.device, processes: int, num_examples: int
) -> list[int]:
    """The batch lengths a run replays from CUDA graphs: the full batch and the epoch's
    last, smaller one, where :func:`graphable` and ``--fast`` allow; else none."""
    size = config.batch_size
    if config.fast is False or not graphable(
        device,
        processes,
        num_examples,
        size,
        config.optimizer,
        config.schedule,
        bool(parse_augment(config.augment)),
    ):
        return []
    return sorted({size, num_examples % size} - {0})


class Steps:
    """``steps(index, count)`` takes a run's step on the examples ``index`` of a global
    batch of ``count`` and returns this process's summed loss: replayed from the CUDA graph
    :meth:`capture` made for batches of ``count``, else ``take(index, count)``."""

    def __init__(self, take: Take) -> None:
        self.take = take
        self.graphs: dict[int, GraphedStep] = {}  # by batch length
        self.capture_seconds = 0.0

    def capture(
        self,
        counts: Sequence[int],
        model: nn.Module,
        forward_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: Sequence[torch.Tensor],
        compile: bool = False,
    ) -> None:
        """Record ``take`` for each batch length in ``counts`` as a CUDA graph. ``model``
        holds the weights and ``forward_model`` runs them (it may be a view of ``model``
        with its layers reordered); ``state``: the tensors ``take`` updates in place besides
        the weights and the optimizer's."""
        start = time.perf_counter()
        device = next(model.parameters()).device
        forward = fast_forward(forward_model, compile)
        with tf32_matmuls():
            for count in counts:
                step = partial(self.take, count=count, forward=forward)
                self.graphs[count] = GraphedStep(step, count, device, model, optimizer, state=state)
        torch.cuda.synchronize(device)
        self.capture_seconds = time.perf_counter() - start

    def __call__(self, index: torch.Tensor, count: int) -> torch.Tensor:
        graph = self.graphs.get(count)
        return (graph(index) if graph is not None else self.take(index, count))[0]
