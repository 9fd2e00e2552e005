"""Classifying images with a trained model: files, PIL images, tensors, arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.data.images import open_image, pixels
from cnnlab.errors import DataError
from cnnlab.logs import log, shown
from cnnlab.training.metrics import class_probabilities

SQUEEZE = 3  # a width/height ratio this many times the model's is called out


def load_image(
    path: Path, size: tuple[int, int], invert: bool = False, channels: int = 1
) -> torch.Tensor:
    """Read any PIL-readable image as (channels, H, W) float32 in [0, 1]: grayscale (1) or
    RGB (3), as :func:`cnnlab.data.images.pixels` converts it. Fashion-MNIST shows light
    objects on a dark background: pass ``invert`` for photos of dark objects on a light one.
    """
    try:
        with open_image(path) as image:
            _say_what_is_lost(path, image, size)
            return image_tensor(image, size, invert, channels)
    except DataError as e:
        if str(e).startswith(f"{path}: "):
            raise
        raise DataError(f"{path}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:  # a header, then broken data
        raise DataError(f"{path}: not a readable image (PNG, JPEG, ...): {e}") from e


def image_tensor(
    image: Image.Image, size: tuple[int, int], invert: bool = False, channels: int = 1
) -> torch.Tensor:
    """``image`` (any mode and bit depth) as (channels, H, W) float32 in [0, 1] of
    ``size``, as :func:`load_image` reads a file."""
    x = torch.from_numpy(pixels(image, channels, size))
    return 1 - x if invert else x


def _say_what_is_lost(path: Path, image: Image.Image, size: tuple[int, int]) -> None:
    """A notice for an image that the model sees only in part: an animation's first frame,
    or a shape squeezed far out of proportion into the model's input."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        log.warning("%s: %d frames; the first is classified", shown(path), frames)
    width, height = image.size
    if max(width * size[0], height * size[1]) > SQUEEZE * min(width * size[0], height * size[1]):
        log.warning(
            "%s: %dx%d is squeezed into %dx%d (its proportions are not kept); crop it "
            "around the object for a fairer prediction",
            shown(path),
            width,
            height,
            size[1],
            size[0],
        )


class Prediction(NamedTuple):
    """One image's class, its probability, and every class ranked by probability."""

    label: str
    probability: float
    ranked: list[tuple[str, float]]


Images = Any  # a tensor or array batch, one image, PIL images, paths, or a list of those


class Classifier:
    """A trained run, ready to classify images with its own preprocessing:
    ``cnnlab.load(RUN)``. ``predict`` takes a tensor or numpy array of pixels in [0, 1]
    (uint8: 0-255), (H, W), (N, H, W) or (N, 1, H, W) for a grayscale model and (3, H, W)
    or (N, 3, H, W) for an RGB one, PIL images, paths of image files, or a list mixing
    them; images of another size are resized to the model's input."""

    def __init__(self, model: nn.Module, meta: dict[str, Any]) -> None:
        self.model, self.meta = model.eval(), meta
        self.classes: list[str] = list(meta["classes"])
        shape = meta["preprocessing"]["input_shape"]  # (channels, height, width)
        self.channels = int(shape[0])
        self.size: tuple[int, int] = (int(shape[1]), int(shape[2]))
        self.device = next(model.parameters()).device

    def batch(self, images: Images, invert: bool = False) -> torch.Tensor:
        """``images`` as the model's input (N, 1, H, W) float32 on its device."""
        if isinstance(images, torch.Tensor | np.ndarray):
            return self._array_batch(torch.as_tensor(images), invert)
        items = images if isinstance(images, list | tuple) else [images]
        parts = []
        for item in items:
            if isinstance(item, str | Path):
                parts.append(load_image(Path(item), self.size, invert, self.channels)[None])
            elif isinstance(item, Image.Image):
                parts.append(image_tensor(item, self.size, invert, self.channels)[None])
            elif isinstance(item, torch.Tensor | np.ndarray):
                parts.append(self._array_batch(torch.as_tensor(item), invert).cpu())
            else:
                raise DataError(
                    f"cannot classify a {type(item).__name__}: give tensors, "
                    "numpy arrays, PIL images or image file paths"
                )
        if not parts:
            raise DataError("no images to classify")
        return torch.cat(parts).to(self.device)

    def _array_batch(self, x: torch.Tensor, invert: bool) -> torch.Tensor:
        shape, c = tuple(x.shape), self.channels
        if x.dtype == torch.uint8:
            x = x.float() / 255
        if c == 1 and x.ndim in (2, 3):  # (H, W) or (N, H, W)
            x = x.reshape((1, 1, *shape) if x.ndim == 2 else (shape[0], 1, *shape[1:]))
        elif c == 3 and x.ndim == 3:  # (3, H, W)
            x = x[None]
        if x.ndim != 4 or x.shape[1] != c or not x.is_floating_point():
            wanted = "(H, W), (N, H, W) or (N, 1, H, W)" if c == 1 else "(3, H, W) or (N, 3, H, W)"
            raise DataError(
                f"cannot classify an array of shape {shape} and type {x.dtype}: this model "
                f"takes {'grayscale' if c == 1 else 'RGB'} pixels {wanted}, floats in [0, 1] "
                "or uint8"
            )
        if not torch.isfinite(x).all():
            raise DataError(
                "cannot classify pixels that are not finite numbers (NaN or infinity): "
                "give floats in [0, 1] or uint8"
            )
        x = x.float().to(self.device)
        if tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True).clamp(0, 1)
        return 1 - x if invert else x

    def probabilities(self, images: Images, invert: bool = False) -> torch.Tensor:
        """(N, classes) class probabilities of ``images`` (with the run's test-time
        augmentation, if it used one)."""
        x = self.batch(images, invert)
        with torch.inference_mode():
            return class_probabilities(self.model, x, self.meta.get("tta", False)).cpu()

    def predict(self, images: Images, invert: bool = False) -> list[Prediction]:
        """Each image's :class:`Prediction`, in order."""
        predictions = []
        for row in self.probabilities(images, invert):
            values, indices = row.sort(descending=True)
            ranked = [
                (self.classes[i], float(v))
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
            predictions.append(Prediction(ranked[0][0], ranked[0][1], ranked))
        return predictions


def load(
    run_dir: str | Path, device: torch.device | str = "cpu", trust_model_file: bool = False
) -> Classifier:
    """The model saved in ``run_dir``, ready to classify: ``cnnlab.load(RUN).predict(x)``.

    A run whose model is a file of one's own opens only if you trained with that file on
    this machine; ``trust_model_file=True`` runs a file someone else's run names (read it
    first: it is Python code)."""
    from cnnlab.rundir import load_model

    return Classifier(*load_model(run_dir, device, trust_model_file))
