"""Pictures from files, opened safely, and their pixels as a model of cnnlab's reads them:
grayscale (H, W) or RGB (3, H, W) float32 in [0, 1] at a given size (Lanczos).

Image files come from anywhere, so :func:`open_image` checks what the header declares
before anything is decoded: at most :data:`MAX_PIXELS` pixels (far under PIL's own
limit of 179 million), else the file is refused by name.
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab import environ
from cnnlab.errors import DataError

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


# Pixels an image may have (width x height): a 25-megapixel photo decodes to about 100 MB
# here. Change it with CNNLAB_MAX_PIXELS (read when cnnlab loads this module) or by setting this.
def _max_pixels(default: int = 25_000_000) -> int:
    text = environ.max_pixels()
    return max(1, int(text)) if text.isdigit() else default


MAX_PIXELS = _max_pixels()


def open_image(path: Path) -> Image.Image:
    """``path`` opened (its header read, nothing decoded) if it is a regular file holding
    an image of at most :data:`MAX_PIXELS` pixels; else :class:`DataError` saying why."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory; give the image files in it")
    if not stat.S_ISREG(mode):  # a pipe waits for a writer, a device never ends
        raise DataError(
            f"{path}: not a regular file (a pipe, a device or a socket); give "
            "the path of an image file"
        )
    try:
        with warnings.catch_warnings():  # cnnlab refuses what PIL would only warn of
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        image = None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable image (PNG, JPEG, ...): {e}") from None
    width, height = image.size if image is not None else (0, 0)
    if image is None or width * height > MAX_PIXELS:
        if image is not None:
            image.close()
        pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        size = f"{width}x{height} pixels" if image is not None else f"over {pil_limit:,} pixels"
        raise DataError(
            f"{path}: {size}, more than the {MAX_PIXELS:,} cnnlab decodes; shrink the image, "
            "or raise the limit with CNNLAB_MAX_PIXELS=N"
        )
    return image


def is_gray(image: Image.Image) -> bool:
    """Whether ``image`` is stored as grayscale (a palette image counts as colour)."""
    return image.mode in GRAY_MODES


def gray_pixels(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 in [0, 1] of ``size`` (H, W). 8-bit images are scaled by 255, 16-bit
    ones by 65535 (not clipped to 8 bits), 32-bit integer ones by 2**32 - 1 where they
    exceed 16 bits, float ones taken as [0, 1] (refused if not finite)."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grayscale PNG, TIFF
        values = np.asarray(image, dtype=np.float32)
        full = 65535 if values.max(initial=0) <= 65535 else 2**32 - 1
        gray = values / np.float32(full)
    elif image.mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise DataError("holds pixels that are not finite numbers")
    else:
        gray = np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)
    small = Image.fromarray(gray, mode="F").resize((size[1], size[0]), Image.Resampling.LANCZOS)
    clipped: np.ndarray = np.clip(np.asarray(small, dtype=np.float32), 0, 1)
    return clipped


def rgb_pixels(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 in [0, 1] of ``size`` (H, W); transparency is dropped, and a
    16-bit or float grayscale image is scaled as :func:`gray_pixels` does, then repeated."""
    if image.mode in GRAY_MODES - {"1", "L", "LA"}:
        return np.repeat(gray_pixels(image, size)[None], 3, axis=0)
    rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.LANCZOS)
    planes: np.ndarray = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255
    return planes


def pixels(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``image`` as (channels, H, W) float32 in [0, 1]: 1 (grayscale) or 3 (RGB), turned
    upright as its EXIF orientation says (as a photo viewer shows it)."""
    upright = ImageOps.exif_transpose(image) or image
    return gray_pixels(upright, size)[None] if channels == 1 else rgb_pixels(upright, size)
