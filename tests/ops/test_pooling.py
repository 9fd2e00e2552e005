import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops import avg_pool2d, max_pool2d
from tests.ops.helpers import assert_matches_torch

X16 = torch.arange(16.0).view(1, 1, 4, 4)


def test_book_examples() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    assert max_pool2d(x, 2, stride=1).tolist() == [[[4, 5], [7, 8]]]
    assert avg_pool2d(x, 2, stride=1).tolist() == [[[2, 3], [5, 6]]]
    assert max_pool2d(X16, 3).tolist() == [[[[10]]]]
    assert max_pool2d(X16, 3, padding=1, stride=2).tolist() == [[[[5, 7], [13, 15]]]]
    assert max_pool2d(X16, (2, 3), stride=(2, 3), padding=(0, 1)).tolist() == [[[[5, 7], [13, 15]]]]
    two = max_pool2d(torch.cat([X16, X16 + 1], dim=1), 3, padding=1, stride=2)
    assert two.tolist() == [[[[5, 7], [13, 15]], [[6, 8], [14, 16]]]]


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 1),
    pw=st.integers(0, 1),
    ceil=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_pooling_matches_torch(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil, dtype) -> None:  # type: ignore[no-untyped-def]
    if ph > kh // 2 or pw > kw // 2 or h + 2 * ph < kh or w + 2 * pw < kw:
        return  # torch refuses these
    args = {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw), "ceil_mode": ceil}
    x = torch.randn(n, c, h, w, dtype=dtype)
    assert_matches_torch(lambda t: max_pool2d(t, **args), lambda t: F.max_pool2d(t, **args), [x])
    assert_matches_torch(lambda t: avg_pool2d(t, **args), lambda t: F.avg_pool2d(t, **args), [x])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must be at most half the kernel size"):
        max_pool2d(X16, 2, padding=2)
    with pytest.raises(ValueError, match=r"expected \(C, H, W\) or \(N, C, H, W\)"):
        avg_pool2d(torch.ones(4, 4), 2)
    with pytest.raises(RuntimeError):  # torch refuses the same padding
        F.max_pool2d(X16, 2, padding=2)
