"""A layer-by-layer table of a model: output shape, parameters, multiply-adds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.layers import CONV_TYPES


@dataclass(frozen=True)
class LayerRow:
    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int  # multiply-adds for one input


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, CONV_TYPES):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[LayerRow]:
    """One row per leaf module, in call order, for a single input of ``input_shape``.

    >>> from cnnlab.models import create_model
    >>> [r.output_shape for r in summarize(create_model("lenet"))][:3]
    [(6, 28, 28), (6, 28, 28), (6, 14, 14)]
    """
    rows: list[LayerRow] = []

    def hook(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        rows.append(
            LayerRow(
                type(module).__name__,
                tuple(out.shape[1:]),
                sum(p.numel() for p in module.parameters(recurse=False)),
                _macs(module, out),
            )
        )

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return rows


def totals(rows: list[LayerRow]) -> tuple[int, int]:
    """(parameters, multiply-adds) of the whole model."""
    return sum(r.params for r in rows), sum(r.macs for r in rows)


def format_summary(rows: list[LayerRow]) -> str:
    """Render rows as a text table with totals."""
    lines = [f"{'layer':<14}{'output shape':>16}{'params':>10}{'mult-adds':>12}"]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name:<14}{shape:>16}{r.params:>10,}{r.macs:>12,}")
    total_params, total_macs = totals(rows)
    lines.append(f"{'total':<14}{'':>16}{total_params:>10,}{total_macs:>12,}")
    return "\n".join(lines)
