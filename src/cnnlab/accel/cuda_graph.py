"""The whole training step as one CUDA graph: gather and scale the batch, forward, loss,
backward, SGD update and the batch's metrics, replayed with one launch per step.

LeNet's kernels are tiny, so an eager step on a GPU spends its time launching them from
Python; a replayed graph launches them all at once. The graph reads the batch's example
indices from a fixed buffer, so a step is one small copy plus one replay, with no host
synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


class GraphedStep:
    """``step(index)`` replays ``fn(index)`` (one training step on the examples ``index``)
    from a CUDA graph; ``index`` must have the length of the captured batch.

    Capturing runs a few warm-up steps; the weights and optimizer state are restored
    afterwards, so a run with the graph follows the same trajectory as one without it.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        device: torch.device,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: Sequence[torch.Tensor] = (),
    ) -> None:
        """``state``: other tensors ``fn`` updates in place (restored after the warm-up too)."""
        self.index = torch.arange(batch_size, device=device)

        def tensors() -> list[torch.Tensor]:
            return [*net.state_dict().values(), *_optimizer_tensors(optimizer), *state]

        saved = [t.detach().clone() for t in tensors()]
        self.graph = torch.cuda.CUDAGraph()
        self.outputs = _capture(self.graph, lambda: fn(self.index))
        if len(tensors()) != len(saved):
            raise ValueError("the optimizer created state while warming up; it cannot be graphed")
        with torch.no_grad():  # in place: the graph keeps pointing at the same tensors
            for t, s in zip(tensors(), saved, strict=True):
                t.copy_(s)

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns the graph's output buffers (fn's outputs), which the next call
        overwrites."""
        self.index.copy_(index, non_blocking=True)
        self.graph.replay()
        return self.outputs


def _capture(
    graph: torch.cuda.CUDAGraph, step: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warm up on a side stream (as PyTorch's docs ask), then record ``step`` into ``graph``."""
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        outputs = step()
    return outputs


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        v
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    ]


@contextmanager
def tf32_matmuls() -> Iterator[None]:
    """Float32 matrix products on TF32 tensor cores inside the block, as PyTorch already runs
    cuDNN's float32 convolutions by default; the previous setting is restored after."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
