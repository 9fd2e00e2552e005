"""Data augmentation done on whole batches on the training device: no per-image loop.

Each function takes a float batch ``x`` (B, C, H, W) and a ``torch.Generator`` on x's
device, and returns a new batch of the same shape; every example draws its own
parameters. :func:`augment` applies a named list of them in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

CROP_PADDING = 2  # pixels of zero padding around a 28x28 image before a random 28x28 crop
ERASE_PROBABILITY = 0.5
ERASE_AREA = (0.02, 0.25)  # fraction of the image an erased rectangle covers
ERASE_ASPECT = (0.3, 1 / 0.3)  # height / width of an erased rectangle, drawn log-uniformly


def parse_augment(text: str) -> tuple[str, ...]:
    """Augmentation names from a comma-separated list; ``""`` is none.

    >>> parse_augment("flip,crop")
    ('crop', 'flip')
    """
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(AUGMENTATIONS))
    if unknown:
        raise ConfigError(
            f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)} "
            "(comma separated, e.g. 'crop,flip')"
        )
    return tuple(n for n in AUGMENTATIONS if n in names)


def random_crop(
    x: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING
) -> torch.Tensor:
    """Pad each image with zeros by ``padding`` and take a random crop of the original size."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erase(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al., 2017): with probability 1/2 set a random rectangle of
    2-25% of the image, of aspect ratio 0.3-3.3, to zero."""
    b, _, h, w = x.shape
    u = torch.rand(5, b, generator=generator, device=x.device)
    area = (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * u[0]) * h * w
    lo, hi = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = torch.exp(lo + (hi - lo) * u[1])
    eh = (area * aspect).sqrt().round().clamp(1, h)
    ew = (area / aspect).sqrt().round().clamp(1, w)
    top = ((h - eh + 1) * u[2]).floor()
    left = ((w - ew + 1) * u[3]).floor()
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # (B, H)
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # (B, W)
    erase = (in_rows[:, :, None] & in_cols[:, None, :]) & (u[4] < ERASE_PROBABILITY)[:, None, None]
    return x.masked_fill(erase[:, None], 0.0)


_FUNCTIONS = {"crop": random_crop, "flip": random_flip, "erase": random_erase}
AUGMENTATIONS = tuple(_FUNCTIONS)  # the names, in the order augment applies them


def augment(x: torch.Tensor, names: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``names`` (in the order crop, flip, erase) to batch ``x``."""
    for name, function in _FUNCTIONS.items():
        if name in names:
            x = function(x, generator)
    return x


def augment_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's augmentation: a function of (seed, step, rank) alone, so a
    resumed run draws what the uninterrupted one would have.

    >>> augment_seed(0, 1, 0), augment_seed(0, 1, 1)
    (1024, 1025)
    """
    return (seed * 1_000_003 + step) * 1024 + rank
