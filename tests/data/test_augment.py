import pytest
import torch

from cnnlab.data.augment import augment, parse_augment, random_crop, random_erase, random_flip
from cnnlab.errors import ConfigError


def batch(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28) + 0.5  # no zeros, so erased and padded pixels show


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crop_shifts_each_image_by_at_most_the_padding() -> None:
    x = batch()
    out = random_crop(x, gen())
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for image, result in zip(padded, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(image[:, dy : dy + 28, dx : dx + 28], result)
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # every example draws its own offset


def test_flip_mirrors_about_half() -> None:
    x = batch(200)
    out = random_flip(x, gen())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all()) and 60 < int(flipped.sum()) < 140


def test_erase_zeroes_one_rectangle_in_about_half() -> None:
    x = batch(200)
    out = random_erase(x, gen())
    zero = out[:, 0] == 0
    erased = zero.flatten(1).any(1)
    assert 60 < int(erased.sum()) < 140
    for mask in zero[erased]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all()) and int(mask.sum()) == box.numel()  # one full rectangle
        assert 0.02 * 784 * 0.5 <= box.numel() <= 0.25 * 784 * 1.5
    assert torch.equal(out[~erased], x[~erased])


def test_augment_is_a_function_of_the_generator_and_keeps_gradients_out() -> None:
    x = batch()
    a = augment(x, ("crop", "flip", "erase"), gen(3))
    assert torch.equal(a, augment(x, ("erase", "flip", "crop"), gen(3)))  # fixed order
    assert not torch.equal(a, augment(x, ("crop", "flip", "erase"), gen(4)))
    assert torch.equal(augment(x, (), gen()), x)


def test_parse_augment() -> None:
    assert parse_augment("erase, crop") == ("crop", "erase")
    assert parse_augment("") == ()
    with pytest.raises(ConfigError, match="unknown augmentation rotate; choose from crop, flip"):
        parse_augment("crop,rotate")
