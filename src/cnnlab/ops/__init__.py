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
)
from cnnlab.ops.pooling import avg_pool2d, max_pool2d
from cnnlab.ops.shapes import conv_output_size, receptive_field, same_padding

__all__ = [
    "avg_pool2d",
    "conv2d",
    "conv2d_true",
    "conv_output_size",
    "corr2d",
    "corr2d_1x1",
    "corr2d_as_matmul",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "corr2d_reference",
    "max_pool2d",
    "receptive_field",
    "same_padding",
]
