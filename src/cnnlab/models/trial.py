"""A model tried on one batch before anything is trained or written: each way a model can
fail to fit the data (a layer that gets the wrong shape, no parameters, outputs that are
not one score per class, outputs that are not numbers) said in one line, naming the layer
and the fix."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError


def try_on_batch(model: nn.Module, shape: tuple[int, ...], num_classes: int, name: str) -> None:
    """Run ``model`` once on two blank images of ``shape`` (C, H, W), without gradients (its
    lazy layers take their shapes), and check what it gives.

    >>> try_on_batch(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (1, 2, 2), 3, "mine")
    >>> try_on_batch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2), 3, "mine")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cnnlab.errors.ConfigError: model mine gives 2 scores per image, but the data has 3 ...
    """
    entered: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def note(module: nn.Module, args: tuple[Any, ...]) -> None:
        first = args[0] if args else None
        size = tuple(first.shape) if isinstance(first, torch.Tensor) else ()
        entered.append((names.get(id(module), "?"), module, size))

    names = {id(m): n for n, m in model.named_modules() if n}
    hooks = [m.register_forward_pre_hook(note) for m in model.modules() if m is not model]
    was_training = model.training
    try:
        with torch.no_grad():
            output = model.eval()(torch.zeros(2, *shape))
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise ConfigError(_failed(name, entered, shape, e)) from None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model {name} has no parameters to train: give it a layer that learns")
    if not isinstance(output, torch.Tensor):
        raise ConfigError(
            f"model {name} returns a {type(output).__name__}, not a tensor of class scores: "
            "make its forward return the (N, num_classes) scores"
        )
    if output.dim() != 2 or output.shape[0] != 2:
        raise ConfigError(
            f"model {name} gives scores of shape {tuple(output.shape)} for a batch of 2 images; "
            "it must give (N, num_classes): end it with nn.Flatten() and a linear layer"
        )
    if output.shape[1] != num_classes:
        raise ConfigError(
            f"model {name} gives {output.shape[1]} scores per image, but the data has "
            f"{num_classes} classes: make its last layer give num_classes outputs (take "
            "num_classes as an argument; cnnlab passes it)"
        )
    if not torch.isfinite(output).all():
        raise ConfigError(
            f"model {name} gives scores that are not finite numbers before any training (on "
            "blank images): one of its layers divides by zero or takes a log or root of a "
            "negative; no learning rate can fix that"
        )


def _failed(
    name: str,
    entered: list[tuple[str, nn.Module, tuple[int, ...]]],
    shape: tuple[int, ...],
    error: Exception,
) -> str:
    """What failed, where, and how to fix it, in one line."""
    said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not entered:
        return f"model {name} fails on images of shape {shape}: {said}"
    layer, module, size = entered[-1]
    where = f"model {name}: layer {layer} ({type(module).__name__}) fails on input {size}: {said}"
    channels = getattr(module, "in_channels", None)
    if channels is not None and len(size) == 4 and size[1] != channels:
        return (
            f"{where}. It takes {channels} channels and the images have {size[1]}: give it "
            f"in_channels={size[1]} (take in_channels as an argument; cnnlab passes it), or "
            f"train with --channels {channels}"
        )
    if len(size) == 4 and ("size" in said.lower() or "kernel" in said.lower()):
        return (
            f"{where}. Its {size[2]}x{size[3]} map is too small for it: use smaller kernels "
            "or fewer poolings, or larger images (--image-size)"
        )
    return where
