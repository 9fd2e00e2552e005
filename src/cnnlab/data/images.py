"""Pixels of a picture of any mode and bit depth, as a model of cnnlab's reads them:
grayscale (H, W) or RGB (3, H, W) float32 in [0, 1] at a given size (Lanczos)."""

from __future__ import annotations

import numpy as np
from PIL import Image

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def is_gray(image: Image.Image) -> bool:
    """Whether ``image`` is stored as grayscale (a palette image counts as colour)."""
    return image.mode in GRAY_MODES


def gray_pixels(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 in [0, 1] of ``size`` (H, W). 8-bit images are scaled by 255, 16-bit
    ones by 65535 (not clipped to 8 bits), float ones taken as [0, 1]."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grayscale PNG, TIFF
        values = np.asarray(image, dtype=np.float64)
        full = 65535 if values.max(initial=0) <= 65535 else 2**32 - 1
        gray = (values / full).astype(np.float32)
    elif image.mode == "F":
        gray = np.asarray(image, dtype=np.float32)
    else:
        gray = (np.asarray(image.convert("L"), dtype=np.float32) / 255).astype(np.float32)
    small = Image.fromarray(gray, mode="F").resize((size[1], size[0]), Image.Resampling.LANCZOS)
    clipped: np.ndarray = np.clip(np.asarray(small, dtype=np.float32), 0, 1)
    return clipped


def rgb_pixels(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 in [0, 1] of ``size`` (H, W); transparency is dropped."""
    rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.LANCZOS)
    planes: np.ndarray = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255
    return planes


def pixels(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``image`` as (channels, H, W) float32 in [0, 1]: 1 (grayscale) or 3 (RGB)."""
    return gray_pixels(image, size)[None] if channels == 1 else rgb_pixels(image, size)
