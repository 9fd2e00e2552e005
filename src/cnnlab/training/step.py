"""One training step, whole, in one function; and its replay from CUDA graphs.

:class:`Step` holds what a run's step uses and ``step(index, count)`` takes it on the
examples ``index`` of a global batch of ``count``: gather, augment, scale, forward, loss,
backward, optimizer update, and the batch's summed loss and correct count, top to bottom.
On CUDA, for the book's recipe in one process (:func:`graphable`), :func:`capture` records
that same function as one CUDA graph per batch length (the first block as fused Triton
kernels where it applies, matrix products in TF32), replayed with one launch per step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.accel.cuda_graph import GraphedStep, tf32_matmuls
from cnnlab.accel.fused import fast_forward
from cnnlab.data import Batches
from cnnlab.data.augment import augment, augment_seed
from cnnlab.device import autocast
from cnnlab.training.checkpoint import TrainState

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Step:
    """``step(index, count)``: one optimizer step on the examples ``index`` (this process's
    share of a global batch of ``count``) of ``batches`` through ``net``, the gradient that
    of the global batch's mean loss; adds the batch's summed loss and correct count to
    ``state``'s epoch sums and returns them, on the device (no host synchronisation)."""

    batches: Batches
    net: Forward  # the model's forward, maybe with its blocks fused, maybe under DDP
    optimizer: torch.optim.Optimizer
    state: TrainState  # the epoch's sums; its step count seeds the augmentation
    precision: str = "fp32"
    label_smoothing: float = 0.0
    augmentations: Sequence[str] = ()
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def __call__(self, index: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batches.gather(index)
        if self.augmentations:  # a function of (seed, step, rank): resumed runs draw the same
            seed = augment_seed(self.seed, self.state.step, self.rank)
            x = augment(x, self.augmentations, torch.Generator(x.device).manual_seed(seed))
        scale = self.world_size / count  # the global batch's mean; DDP averages over the world
        with autocast(x.device, self.precision):
            logits = self.net(x)  # (batch, classes)
            loss_sum = F.cross_entropy(
                logits, y, reduction="sum", label_smoothing=self.label_smoothing
            )
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum * scale).backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        loss_sum, correct = loss_sum.detach(), (logits.argmax(dim=1) == y).sum()
        self.state.loss_sum += loss_sum
        self.state.correct += correct
        return loss_sum, correct


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


def graph_lengths(batch_size: int, num_examples: int, wanted: bool) -> list[int]:
    """The batch lengths a run replays from CUDA graphs, where ``wanted`` (:func:`graphable`
    and not ``--no-fast``): the full batch and the epoch's last, smaller one.

    >>> graph_lengths(256, 1000, True), graph_lengths(256, 1000, False)
    ([232, 256], [])
    """
    return sorted({batch_size, num_examples % batch_size} - {0}) if wanted else []


def capture(
    step: Step, counts: Sequence[int], model: nn.Module, forward_model: nn.Module, compile: bool
) -> tuple[dict[int, GraphedStep], float]:
    """``step`` recorded as a CUDA graph for each batch length in ``counts`` (by length),
    and the seconds that took. ``model`` holds the weights and ``forward_model`` runs them
    (a view of ``model`` with its layers reordered, maybe)."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    fast = dataclasses.replace(step, net=fast_forward(forward_model, compile) or step.net)
    sums = (step.state.loss_sum, step.state.correct)  # updated in place by the graph
    graphs = {}
    with tf32_matmuls():
        for count in counts:
            graphs[count] = GraphedStep(
                partial(fast, count=count), count, device, model, step.optimizer, state=sums
            )
    torch.cuda.synchronize(device)
    return graphs, time.perf_counter() - start
