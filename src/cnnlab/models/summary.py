"""A layer-by-layer table of any model: each layer's window (kernel, stride, padding),
output shape, parameters, multiply-adds and receptive field; and the lines the book's
shape cells print for its blocks."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.layers import CONV_TYPES, POOL_TYPES
from cnnlab.models.modern import Resize
from cnnlab.ops.shapes import receptive_field

Pair = tuple[int, int]


@dataclass(frozen=True)
class LayerRow:
    name: str  # the layer's class
    output_shape: tuple[int, ...]
    params: int
    macs: int  # multiply-adds for one input
    path: str = ""  # where it is in the model (model.named_modules)
    window: tuple[Pair, Pair, Pair] | None = None  # (kernel, stride, padding) of conv/pool
    field: Pair | None = None  # input pixels (h, w) one output element sees


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, CONV_TYPES):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def _pair(value: object) -> Pair:
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[-1])
    return int(value), int(value)  # type: ignore[call-overload]


def _window(module: nn.Module, given: tuple[int, ...]) -> tuple[Pair, Pair, Pair] | None:
    """(kernel, stride, padding) of a convolution or pooling layer on an input ``given``
    (C, H, W); a global pooling's window is the whole map."""
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        if _pair(module.output_size) == (1, 1) and len(given) == 3:
            return (given[1], given[2]), (given[1], given[2]), (0, 0)
        return None
    if not isinstance(module, (*CONV_TYPES, *POOL_TYPES)):
        return None
    kernel = _pair(module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    padding = module.padding if isinstance(module.padding, tuple | list | int) else (0, 0)
    return span, stride, _pair(padding)


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[LayerRow]:
    """One row per leaf module, in call order, for a single input of ``input_shape``;
    receptive fields in pixels of what the network sees (after a first resizing layer).

    >>> from cnnlab.models import create_model
    >>> rows = summarize(create_model("lenet"))
    >>> [r.output_shape for r in rows][:3], [r.field for r in rows][:3]
    ([(6, 28, 28), (6, 28, 28), (6, 14, 14)], [(5, 5), (5, 5), (6, 6)])
    """
    rows: list[LayerRow] = []
    paths = {id(m): name for name, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[object, ...], out: torch.Tensor) -> None:
        given = inputs[0].shape[1:] if inputs and isinstance(inputs[0], torch.Tensor) else ()
        rows.append(
            LayerRow(
                type(module).__name__,
                tuple(out.shape[1:]),
                sum(p.numel() for p in module.parameters(recurse=False)),
                _macs(module, out),
                paths.get(id(module), ""),
                _window(module, tuple(given)),
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
    chain = all(isinstance(m, nn.Sequential) for m in model.modules() if list(m.children()))
    fields = _chain_fields(rows) if chain else _probed_fields(model, rows, input_shape)
    return [
        LayerRow(r.name, r.output_shape, r.params, r.macs, r.path, r.window, f)
        for r, f in zip(rows, fields, strict=True)
    ]


def _chain_fields(rows: list[LayerRow]) -> list[Pair | None]:
    """Receptive fields of a network whose layers run one after another: the chapter's
    arithmetic over its windows (``cnnlab.ops.receptive_field``)."""
    windows: list[tuple[Pair, Pair, Pair]] = []
    fields: list[Pair | None] = []
    for row in rows:
        if row.name == "Resize":
            windows = []  # fields are measured in the resized image's pixels
        if row.window is not None:
            windows.append(row.window)
        if len(row.output_shape) != 3 or not windows:
            fields.append(None if len(row.output_shape) != 3 else (1, 1))
            continue
        per_axis = [
            receptive_field([(w[0][a], w[1][a], w[2][a]) for w in windows])[-1].size for a in (0, 1)
        ]
        fields.append((per_axis[0], per_axis[1]))
    return fields


def _probed_fields(
    model: nn.Module, rows: list[LayerRow], input_shape: tuple[int, ...]
) -> list[Pair | None]:
    """Receptive fields of a network that branches (residual, Inception, dense blocks),
    found by asking which input pixels reach one output element: in a copy whose layers
    average (positive weights, max pooling as average pooling, batch norm as identity), the
    gradient of the centre element is non-zero exactly on its field. Measured within the
    image, so a field larger than the image shows as the image's size."""
    probe = copy.deepcopy(model).cpu().float().eval()
    for parent in list(probe.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                swapped = nn.AvgPool2d(
                    child.kernel_size, child.stride, child.padding, child.ceil_mode
                )
                setattr(parent, name, swapped)
    with torch.no_grad():
        for module in probe.modules():
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
            if isinstance(weight, torch.Tensor):
                fan_in = weight[0].numel() if weight.dim() > 1 else 1
                weight.fill_(1.0 / fan_in)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    side = input_side(model)
    # the fields are in the resized image's pixels: the probe starts after the resizing
    start = probe[1:] if side and isinstance(probe, nn.Sequential) else probe
    shape = (input_shape[0], side, side) if side else input_shape
    outputs: dict[str, torch.Tensor] = {}
    paths = {m: name for name, m in probe.named_modules()}
    handles = [
        m.register_forward_hook(lambda m, _i, out: outputs.__setitem__(paths[m], out))
        for m in probe.modules()
        if not list(m.children())
    ]
    x = torch.ones(1, *shape, requires_grad=True)
    try:
        start(x)
    finally:
        for h in handles:
            h.remove()
    fields: list[Pair | None] = []
    for row in rows:
        out = outputs.get(row.path)
        if out is None or out.dim() != 4 or not out.requires_grad:
            fields.append(None)
            continue
        centre = out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum()
        (grad,) = torch.autograd.grad(centre, x, retain_graph=True)
        hit = grad[0].abs().sum(dim=0).nonzero()
        if not len(hit):
            fields.append(None)
            continue
        extent = hit.max(dim=0).values - hit.min(dim=0).values + 1
        fields.append((int(extent[0]), int(extent[1])))
    return fields


def book_lines(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[str]:
    """What the book's shape cell prints for ``model`` (a Sequential of blocks): each
    block's class and output shape, for one input; a first resizing layer stands for the
    book's resized data and prints nothing.

    >>> from cnnlab.models import create_model
    >>> book_lines(create_model("lenet"))[0]
    'Conv2d output shape:\\t torch.Size([1, 6, 28, 28])'
    """
    if not isinstance(model, nn.Sequential):
        return []
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    lines = []
    with torch.inference_mode():
        for block in model.eval():
            x = block(x)
            if not isinstance(block, Resize):
                lines.append(f"{type(block).__name__} output shape:\t {x.shape}")
    return lines


def input_side(model: nn.Module) -> int | None:
    """The side a model resizes its input to first (the Modern-CNN networks), if it does."""
    first = next(iter(model.children()), None)
    return first.size if isinstance(first, Resize) else None


def totals(rows: list[LayerRow]) -> tuple[int, int]:
    """(parameters, multiply-adds) of the whole model."""
    return sum(r.params for r in rows), sum(r.macs for r in rows)


def format_summary(rows: list[LayerRow]) -> str:
    """Render rows as a text table with totals: where each layer is, what it is, its
    window, output shape, parameters, multiply-adds and receptive field."""

    def pair(p: Pair | None) -> str:
        return "" if p is None else f"{p[0]}x{p[1]}"

    width = max([5, *(len(r.path) for r in rows)]) + 2
    head = ("kernel", "stride", "padding", "output shape", "params", "mult-adds", "field")
    lines = [
        f"{'layer':<{width}}{'':<18}"
        + "".join(f"{h:>{w}}" for h, w in zip(head, WIDTHS, strict=True))
    ]
    for r in rows:
        kernel, stride, padding = r.window if r.window is not None else (None, None, None)
        cells = (
            pair(kernel),
            pair(stride),
            pair(padding),
            "x".join(map(str, r.output_shape)),
            f"{r.params:,}",
            f"{r.macs:,}",
            pair(r.field),
        )
        lines.append(
            f"{r.path:<{width}}{r.name:<18}"
            + "".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True))
        )
    total_params, total_macs = totals(rows)
    lines.append(
        f"{'total':<{width}}{'':<18}{'':>{sum(WIDTHS[:4])}}{total_params:>{WIDTHS[4]},}"
        f"{total_macs:>{WIDTHS[5]},}"
    )
    return "\n".join(lines)


WIDTHS = (8, 8, 9, 15, 13, 16, 9)
