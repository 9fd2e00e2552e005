"""Pure, stateless, vectorized functions on tensors: the chapter's operations from scratch."""

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
from cnnlab.ops.shapes import Layer, conv_output_size, receptive_field, same_padding, trace

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
