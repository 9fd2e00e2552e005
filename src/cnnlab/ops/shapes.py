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
    n: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1,
    ceil_mode: bool = False,
) -> int:  # fmt: skip
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


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> list[Field]:
    """Fields after each (kernel, stride, padding-before) layer of a stack.

    >>> [f.size for f in receptive_field([(5, 1, 2), (2, 2, 0), (5, 1, 0), (2, 2, 0)])]
    [5, 6, 14, 16]
    """
    size, jump, start = 1, 1, 0.5
    fields = []
    for kernel, stride, pad in layers:
        if kernel < 1 or stride < 1 or pad < 0:
            raise ValueError(f"bad layer (kernel, stride, padding) = {(kernel, stride, pad)}")
        size += (kernel - 1) * jump
        start += ((kernel - 1) / 2 - pad) * jump
        jump *= stride
        fields.append(Field(size, jump, start))
    return fields
