import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops import conv_output_size, receptive_field, same_padding


def test_book_examples() -> None:
    assert conv_output_size(8, 3, padding=1) == 8
    assert (conv_output_size(8, 5, padding=2), conv_output_size(8, 3, padding=1)) == (8, 8)
    assert conv_output_size(8, 3, stride=2, padding=1) == 4
    assert (conv_output_size(8, 3, 3, 0), conv_output_size(8, 5, 4, 1)) == (2, 2)
    assert same_padding(5) == (2, 2) and same_padding(2) == (1, 0)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    ceil=st.booleans(),
)
def test_matches_the_shapes_torch_produces(
    n: int, k: int, s: int, p: int, d: int, ceil: bool
) -> None:
    x = torch.zeros(1, 1, n, 1)
    if n + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_output_size(n, k, s, p, d)
        return
    conv = F.conv2d(x, torch.zeros(1, 1, k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1))
    assert conv_output_size(n, k, s, p, d) == conv.shape[2]
    if p <= k // 2 and d == 1:
        pooled = F.max_pool2d(x, (k, 1), (s, 1), (p, 0), ceil_mode=ceil)
        assert conv_output_size(n, k, s, p, ceil_mode=ceil) == pooled.shape[2]


def test_same_padding_keeps_the_size() -> None:
    for k in range(1, 8):
        top, bottom = same_padding(k)
        assert conv_output_size(9, k, padding=(top, bottom)) == 9


def test_receptive_field_of_lenet() -> None:
    fields = receptive_field([(5, 1, 2), (2, 2, 0), (5, 1, 0), (2, 2, 0)])
    assert [(f.size, f.jump) for f in fields] == [(5, 1), (6, 2), (14, 2), (16, 4)]


def test_bad_values() -> None:
    with pytest.raises(ValueError, match="must be positive, got n=8, kernel=0"):
        conv_output_size(8, 0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        conv_output_size(8, 3, padding=-1)


def test_a_stack_whose_field_passes_float_precision_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1,100 stride-2 layers made the field's jump 2**1100: OverflowError before."""
    import re

    from cnnlab.cli import main

    with pytest.raises(ValueError, match=re.escape("layer 54: the receptive field passes 2**53")):
        receptive_field([(1, 2, 0)] * 1100)
    assert len(receptive_field([(1, 2, 0)] * 52)) == 52  # up to the limit, exact
    assert main(["shape", "--input", "28x28", *["--layer", "conv,k=1,s=2"] * 1100]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: layer 54: the receptive field passes 2**53 pixels")
