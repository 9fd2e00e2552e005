"""Shape arithmetic of convolution and pooling, on plain ints (d2l's padding-and-stride section).

Padding is either total per dimension (the book's p_h) given as one int per side
(``padding=1`` pads 1 before and 1 after), or an explicit ``(before, after)`` pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Padding = int | tuple[int, int]


def _sides(padding: Padding) -> tuple[int, int]:
    before, after = (padding, padding) if isinstance(padding, int) else padding
    if before < 0 or after < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return before, after


def conv_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length along one dimension: floor((n + p - d(k-1) - 1) / s) + 1.

    ``ceil_mode`` rounds up as pooling may, but (like torch) never starts a window
    inside the right padding.

    >>> conv_output_size(8, 3, padding=1)          # k=3, padding 1: same size
    8
    >>> conv_output_size(8, 3, stride=3, padding=0), conv_output_size(8, 5, stride=4, padding=1)
    (2, 2)
    """
    if n < 1 or kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(
            f"input size, kernel, stride and dilation must be positive, got n={n}, "
            f"kernel={kernel}, stride={stride}, dilation={dilation}"
        )
    before, after = _sides(padding)
    span = dilation * (kernel - 1) + 1
    if span > n + before + after:
        raise ValueError(
            f"kernel extent {span} is larger than the padded input {n + before + after} "
            f"(n={n}, padding=({before}, {after})); use a smaller kernel or more padding"
        )
    room = n + before + after - span
    out = (math.ceil(room / stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + before:
        out -= 1  # the last window would start in the padding
    return out


def same_padding(kernel: int) -> tuple[int, int]:
    """The (before, after) padding that keeps the size at stride 1: p = k - 1 in total,
    ceil(p/2) on top/left and floor(p/2) on bottom/right (the book's rule for even k).

    >>> same_padding(3), same_padding(4)
    ((1, 1), (2, 1))
    """
    if kernel < 1:
        raise ValueError(f"kernel must be positive, got {kernel}")
    total = kernel - 1
    return (total + 1) // 2, total // 2


@dataclass(frozen=True)
class Field:
    """The receptive field of one output element, measured in input pixels."""

    size: int  # how many input pixels (per dimension) can affect it
    jump: int  # input pixels between neighbouring output elements
    start: float  # input coordinate of the centre of the first output's field


MAX_FIELD = 2**53  # field sizes and positions stay exact in a float below this


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> list[Field]:
    """Fields after each (kernel, stride, padding-before) layer of a stack.

    >>> [f.size for f in receptive_field([(5, 1, 2), (2, 2, 0), (5, 1, 0), (2, 2, 0)])]
    [5, 6, 14, 16]
    """
    size, jump, start = 1, 1, 0.5
    fields = []
    for n, (kernel, stride, pad) in enumerate(layers, start=1):
        if kernel < 1 or stride < 1 or pad < 0:
            raise ValueError(f"bad layer (kernel, stride, padding) = {(kernel, stride, pad)}")
        if max(jump * stride, size + (kernel - 1) * jump, pad * jump) > MAX_FIELD:
            raise ValueError(
                f"layer {n}: the receptive field passes 2**53 pixels, past what "
                "any image has (and float precision); use fewer or smaller layers"
            )
        size += (kernel - 1) * jump
        start += ((kernel - 1) / 2 - pad) * jump
        jump *= stride
        fields.append(Field(size, jump, start))
    return fields


@dataclass(frozen=True)
class Layer:
    """One convolution or pooling layer of a stack, for ``trace``: (height, width) pairs,
    padding per side."""

    kind: str  # "conv" or "pool"
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def describe(self) -> str:
        parts = [f"{self.kind} {self.kernel[0]}x{self.kernel[1]}"]
        for name, value in (
            ("stride", self.stride),
            ("padding", self.padding),
            ("dilation", self.dilation),
        ):
            if value != ((0, 0) if name == "padding" else (1, 1)):
                parts.append(f"{name} {value[0]}x{value[1]}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Step:
    """A layer's output size (h, w) and the receptive field of one output element per axis."""

    layer: Layer
    size: tuple[int, int]
    field_h: Field
    field_w: Field


def trace(size: tuple[int, int], layers: Sequence[Layer]) -> list[Step]:
    """Output size and receptive field after each layer, for an input of ``size`` (h, w).

    >>> lenet = [Layer("conv", (5, 5), padding=(2, 2)), Layer("pool", (2, 2), (2, 2)),
    ...          Layer("conv", (5, 5)), Layer("pool", (2, 2), (2, 2))]
    >>> [(s.size, s.field_h.size) for s in trace((28, 28), lenet)]
    [((28, 28), 5), ((14, 14), 6), ((10, 10), 14), ((5, 5), 16)]
    """
    for layer in layers:
        if layer.kind not in ("conv", "pool"):
            raise ValueError(f"layer kind must be 'conv' or 'pool', got {layer.kind!r}")
    fields = [  # per axis; a dilated kernel spans d * (k - 1) + 1 pixels
        receptive_field(
            [(x.dilation[a] * (x.kernel[a] - 1) + 1, x.stride[a], x.padding[a]) for x in layers]
        )
        for a in (0, 1)
    ]
    steps = []
    for i, layer in enumerate(layers):
        size = (
            conv_output_size(
                size[0], layer.kernel[0], layer.stride[0], layer.padding[0], layer.dilation[0]
            ),
            conv_output_size(
                size[1], layer.kernel[1], layer.stride[1], layer.padding[1], layer.dilation[1]
            ),
        )
        steps.append(Step(layer, size, fields[0][i], fields[1][i]))
    return steps
