"""The first block as fused Triton kernels on CUDA (needs a CUDA device), against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.accel.fused import FirstBlock, fast_forward
from cnnlab.models import create_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(("batch", "channels", "kernel", "size"), [(256, 6, 5, 28), (7, 11, 3, 10)])
def test_fused_first_block_matches_torch(batch: int, channels: int, kernel: int, size: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, size, size, device="cuda")
    weight = torch.randn(channels, 1, kernel, kernel, device="cuda", requires_grad=True)
    bias = torch.randn(channels, device="cuda", requires_grad=True)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # exact float32 reference
        expected = F.avg_pool2d(torch.sigmoid(F.conv2d(x, weight, bias, padding=kernel // 2)), 2)
        grad = torch.randn_like(expected)
        expected_grads = torch.autograd.grad(expected, (weight, bias), grad)
    out = FirstBlock.apply(x, weight, bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out, (weight, bias), grad)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="even image size"):
        FirstBlock.apply(x[..., 1:], weight, bias)


def test_fast_forward_fuses_only_the_books_block() -> None:
    book = create_model("lenet").cuda()
    forward = fast_forward(book)
    assert forward is not None
    x = torch.rand(5, 1, 28, 28, device="cuda")
    torch.testing.assert_close(forward(x), book(x), rtol=1e-4, atol=1e-5)
    for options in ({"activation": "relu"}, {"pool": "max"}, {"backend": "scratch"}):
        assert fast_forward(create_model("lenet", **options)) is None
