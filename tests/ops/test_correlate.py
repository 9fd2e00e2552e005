import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops import (
    conv2d,
    conv2d_true,
    corr2d,
    corr2d_1x1,
    corr2d_as_matmul,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_reference,
)
from tests.ops.helpers import assert_matches_torch

DTYPES = st.sampled_from([torch.float32, torch.float64])

# SPEC.md's worked examples, with their exact numbers.
X = torch.arange(9.0).view(3, 3)
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
X2 = torch.stack([X, X + 1])
K2 = torch.stack([K, K + 1])


@pytest.mark.parametrize("op", [corr2d, corr2d_reference, corr2d_as_matmul])
def test_book_example(op) -> None:  # type: ignore[no-untyped-def]
    assert op(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_edge_detection() -> None:
    image = torch.ones(6, 8)
    image[:, 2:6] = 0
    edges = corr2d(image, torch.tensor([[1.0, -1.0]]))
    expected = torch.zeros(6, 7)
    expected[:, 1], expected[:, 5] = 1, -1
    assert torch.equal(edges, expected)
    assert torch.equal(corr2d(image.t(), torch.tensor([[1.0, -1.0]])), torch.zeros(8, 5))


def test_channels() -> None:
    assert corr2d_multi_in(X2, K2).tolist() == [[56, 72], [104, 120]]
    out = corr2d_multi_in_out(X2, torch.stack([K2, K2 + 1, K2 + 2]))
    assert out.tolist() == [
        [[56, 72], [104, 120]],
        [[76, 100], [148, 172]],
        [[96, 128], [192, 224]],
    ]
    x, k = torch.randn(3, 3, 3), torch.randn(2, 3, 1, 1)
    torch.testing.assert_close(corr2d_1x1(x, k), corr2d_multi_in_out(x, k))


def test_true_convolution_is_correlation_with_a_flipped_kernel() -> None:
    x, k = torch.randn(5, 6), torch.randn(2, 3)
    expected = F.conv_transpose2d(x[None, None], k[None, None])[0, 0]  # full convolution
    torch.testing.assert_close(conv2d_true(x, k), expected[1:-1, 2:-2])
    torch.testing.assert_close(conv2d_true(x, k), corr2d(x, k.flip(0, 1)))


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(2, 7),
    w=st.integers(2, 7),
    kh=st.integers(1, 2),
    kw=st.integers(1, 2),
    dtype=DTYPES,
)
def test_2d_ops_match_torch(h: int, w: int, kh: int, kw: int, dtype: torch.dtype) -> None:
    x, k = torch.randn(h, w, dtype=dtype), torch.randn(kh, kw, dtype=dtype)
    theirs = lambda x, k: F.conv2d(x[None, None], k[None, None])[0, 0]  # noqa: E731
    for op in (corr2d, corr2d_reference, corr2d_as_matmul):
        assert_matches_torch(op, theirs, [x, k])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    dh=st.integers(1, 2),
    dw=st.integers(1, 2),
    dtype=DTYPES,
)
def test_conv2d_matches_torch(n, c, o, h, w, kh, kw, sh, sw, ph, pw, dh, dw, dtype) -> None:  # type: ignore[no-untyped-def]
    if h + 2 * ph < dh * (kh - 1) + 1 or w + 2 * pw < dw * (kw - 1) + 1:
        return  # torch refuses these too (see test_bad_shapes)
    args = {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw)}
    assert_matches_torch(
        lambda x, wt, b: conv2d(x, wt, b, **args),
        lambda x, wt, b: F.conv2d(x, wt, b, **args),
        [
            torch.randn(n, c, h, w, dtype=dtype),
            torch.randn(o, c, kh, kw, dtype=dtype),
            torch.randn(o, dtype=dtype),
        ],
    )


def test_conv2d_per_side_padding() -> None:
    x, wt = (
        torch.randn(2, 2, 5, 6, dtype=torch.float64),
        torch.randn(3, 2, 2, 3, dtype=torch.float64),
    )
    assert_matches_torch(
        lambda x, wt: conv2d(x, wt, padding=(0, 1, 2, 0)),  # top, bottom, left, right
        lambda x, wt: F.conv2d(F.pad(x, (2, 0, 0, 1)), wt),
        [x, wt],
    )


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"kernel \(4, 1\) is larger than the input \(3, 3\)"):
        corr2d(X, torch.ones(4, 1))
    with pytest.raises(ValueError, match="x has 3 channels but the weight expects 2"):
        conv2d(torch.ones(1, 3, 5, 5), torch.ones(1, 2, 3, 3))
    with pytest.raises(ValueError, match="kernel extent 5 is larger than the padded input 4"):
        conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 5, 5))
    with pytest.raises(ValueError, match="stride and dilation must be positive"):
        conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2), stride=0)
    with pytest.raises(RuntimeError):  # torch refuses the same inputs
        F.conv2d(torch.ones(1, 3, 5, 5), torch.ones(1, 2, 3, 3))
