"""Classifying image files with a trained model."""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from cnnlab.errors import DataError
from cnnlab.logs import log, shown
from cnnlab.training.metrics import class_probabilities

SQUEEZE = 3  # a width/height ratio this many times the model's is called out


def load_image(path: Path, size: tuple[int, int], invert: bool = False) -> torch.Tensor:
    """Read any PIL-readable image as (1, H, W) float32 grayscale in [0, 1].

    8-bit images are scaled by 255, 16-bit ones by 65535 (not clipped to 8 bits), float
    ones are taken as [0, 1]. Fashion-MNIST shows light objects on a dark background: pass
    ``invert`` for photos of dark objects on a light one.
    """
    _check_regular(path)
    try:
        with Image.open(path) as image:
            _say_what_is_lost(path, image, size)
            gray = _grayscale(image)
            small = Image.fromarray(gray, mode="F").resize((size[1], size[0]),
                                                            Image.Resampling.LANCZOS)  # fmt: skip
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: too large to open safely ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image (PNG, JPEG, ...): {e}") from e
    pixels = torch.from_numpy(np.clip(np.asarray(small, dtype=np.float32), 0, 1)).unsqueeze(0)
    return 1 - pixels if invert else pixels


def _check_regular(path: Path) -> None:
    """Refuse what is not a file of bytes before opening it: opening a named pipe waits
    for a writer, and a device never ends."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory; give the image files in it")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a pipe, a device or a socket); give "
                        "the path of an image file")  # fmt: skip


def _say_what_is_lost(path: Path, image: Image.Image, size: tuple[int, int]) -> None:
    """A notice for an image that the model sees only in part: an animation's first frame,
    or a shape squeezed far out of proportion into the model's input."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        log.warning("%s: %d frames; the first is classified", shown(path), frames)
    width, height = image.size
    if max(width * size[0], height * size[1]) > SQUEEZE * min(width * size[0], height * size[1]):
        log.warning("%s: %dx%d is squeezed into %dx%d (its proportions are not kept); crop it "
                    "around the object for a fairer prediction", shown(path), width, height,
                    size[1], size[0])  # fmt: skip


def _grayscale(image: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1], whatever the image's mode and bit depth."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grayscale PNG, TIFF
        values = np.asarray(image, dtype=np.float64)
        full = 65535 if values.max(initial=0) <= 65535 else 2**32 - 1
        return (values / full).astype(np.float32)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def predict_files(
    model: nn.Module,
    meta: dict[str, Any],
    paths: Sequence[Path],
    invert: bool = False,
    top: int = 3,
) -> Iterator[tuple[Path, list[tuple[str, float]] | DataError]]:
    """Yield each path with its ``top`` (class, probability) pairs, or the error reading it."""
    classes = meta["classes"]
    size = tuple(meta["preprocessing"]["input_shape"][1:])
    device = next(model.parameters()).device
    for path in paths:
        try:
            x = load_image(path, (size[0], size[1]), invert).unsqueeze(0).to(device)  # (1, 1, H, W)
        except DataError as e:
            yield path, e
            continue
        with torch.inference_mode():
            probs = class_probabilities(model.eval(), x, meta.get("tta", False))[0].cpu()
        values, indices = probs.topk(min(top, len(classes)))
        yield path, [(classes[i], float(v)) for v, i in zip(values, indices.tolist(), strict=True)]
