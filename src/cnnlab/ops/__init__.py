"""Pure, stateless, vectorized functions on tensors: the chapter's operations from scratch.

The shape arithmetic (``cnnlab.ops.shapes``: plain ints) loads with the package; the
operations on tensors load on first use, so ``cnnlab shape`` answers without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.lazy import lazy_names
from cnnlab.ops.shapes import Layer, conv_output_size, receptive_field, same_padding, trace

if TYPE_CHECKING:
    from cnnlab.ops.correlate import (
        conv2d,
        conv2d_true,
        corr2d,
        corr2d_1x1,
        corr2d_as_matmul,
        corr2d_multi_in,
        corr2d_multi_in_out,
        corr2d_reference,
        pad2d,
    )
    from cnnlab.ops.kernels import (
        box_blur,
        diagonal_edge,
        edge_at_angle,
        fit_kernel,
        horizontal_edge,
        second_derivative,
        vertical_edge,
    )
    from cnnlab.ops.pooling import (
        avg_pool2d,
        avg_pool2d_as_conv,
        max_pool2d,
        max_pool2d_via_relu,
        max_via_relu,
    )

__getattr__ = lazy_names(
    "cnnlab.ops",
    {
        "conv2d": "correlate",
        "conv2d_true": "correlate",
        "corr2d": "correlate",
        "corr2d_1x1": "correlate",
        "corr2d_as_matmul": "correlate",
        "corr2d_multi_in": "correlate",
        "corr2d_multi_in_out": "correlate",
        "corr2d_reference": "correlate",
        "pad2d": "correlate",
        "box_blur": "kernels",
        "diagonal_edge": "kernels",
        "edge_at_angle": "kernels",
        "fit_kernel": "kernels",
        "horizontal_edge": "kernels",
        "second_derivative": "kernels",
        "vertical_edge": "kernels",
        "avg_pool2d": "pooling",
        "avg_pool2d_as_conv": "pooling",
        "max_pool2d": "pooling",
        "max_pool2d_via_relu": "pooling",
        "max_via_relu": "pooling",
    },
)

__all__ = [
    "Layer",
    "avg_pool2d",
    "avg_pool2d_as_conv",
    "box_blur",
    "conv2d",
    "conv2d_true",
    "conv_output_size",
    "corr2d",
    "corr2d_1x1",
    "corr2d_as_matmul",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "corr2d_reference",
    "diagonal_edge",
    "edge_at_angle",
    "fit_kernel",
    "horizontal_edge",
    "max_pool2d",
    "max_pool2d_via_relu",
    "max_via_relu",
    "pad2d",
    "receptive_field",
    "same_padding",
    "second_derivative",
    "trace",
    "vertical_edge",
]
