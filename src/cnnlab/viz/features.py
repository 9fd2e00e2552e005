"""What the convolutions see: first-layer kernels and per-layer activations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.layers import CONV_TYPES, POOL_TYPES


def conv_activations(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The output of every conv layer's activation for one input x (1, C, H, W).

    In a Sequential, a conv followed by an activation module is reported after that
    activation (the chapter's exercise looks at activations); otherwise the conv output.
    Returns (name, (channels, H, W)) pairs in forward order.
    """
    place = {  # where each module stands in a Sequential: (that Sequential, its index)
        id(child): (seq, i)
        for seq in model.modules()
        if isinstance(seq, nn.Sequential)
        for i, child in enumerate(seq)
    }
    targets: list[tuple[str, nn.Module]] = []
    for module in model.modules():
        if not isinstance(module, CONV_TYPES):
            continue
        seq, i = place.get(id(module), (None, 0))
        after = seq[i + 1] if seq is not None and i + 1 < len(seq) else None
        activation = (
            after is not None
            and not list(after.parameters())
            and not isinstance(after, (*POOL_TYPES, nn.Flatten))
        )
        label = f"conv{len(targets) + 1}" + (f" + {type(after).__name__}" if activation else "")
        targets.append((label, after if activation and after is not None else module))
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out[0].detach().cpu())
        )
        for name, module in targets
    ]
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return [(name, captured[name]) for name, _ in targets]


def plot_kernels(weight: torch.Tensor, title: str = "conv1 kernels") -> Figure:
    """One tile per (output, input) channel of a conv weight (O, I, kh, kw), shared colour scale."""
    w = weight.detach().cpu().float().numpy()
    out_ch, in_ch = w.shape[:2]
    limit = float(np.abs(w).max()) or 1.0
    fig = Figure(figsize=(1.3 * out_ch, 1.4 * in_ch + 0.4), layout="constrained")
    axes = fig.subplots(in_ch, out_ch, squeeze=False)
    for o in range(out_ch):
        for i in range(in_ch):
            ax = axes[i, o]
            ax.imshow(w[o, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"out {o}", fontsize=8)
    fig.suptitle(f"{title} (red > 0 > blue)", fontsize=10)
    return fig


def plot_feature_maps(
    model: nn.Module, image: torch.Tensor, title: str = "", max_channels: int = 16
) -> Figure:
    """The input, then every conv layer's activation maps, one row per layer.

    ``image`` (C, H, W) scaled as the model expects.
    """
    return plot_feature_maps_of(model, [(title, image)], max_channels)


MAX_LAYERS = 8  # rows of feature maps per image: a deep network's layers, evenly spaced


def evenly_spaced(layers: list[Any], most: int = MAX_LAYERS) -> list[Any]:
    """``layers``, or ``most`` of them evenly spaced from the first to the last.

    >>> evenly_spaced(list(range(57)), 5)
    [0, 14, 28, 42, 56]
    """
    if len(layers) <= most:
        return layers
    return [layers[round(i * (len(layers) - 1) / (most - 1))] for i in range(most)]


def shown_layers(model: nn.Module, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """:func:`conv_activations` of ``image`` (C, H, W), at most :data:`MAX_LAYERS` of
    them (evenly spaced, each named by its place: ``5/57 conv``)."""
    layers = conv_activations(model, image.unsqueeze(0))
    if len(layers) <= MAX_LAYERS:
        return layers
    return evenly_spaced([(f"{i + 1}/{len(layers)} {n}", m) for i, (n, m) in enumerate(layers)])


def plot_feature_maps_of(
    model: nn.Module, chosen: Sequence[tuple[str, torch.Tensor]], max_channels: int = 16
) -> Figure:
    """:func:`plot_feature_maps` for each of the ``chosen`` (title, image) pairs, one
    below the other in one figure; of a network with more than :data:`MAX_LAYERS` conv
    layers (GoogLeNet has 57), that many evenly spaced from the first to the last, each
    row named by its place (a figure of every layer took minutes to lay out)."""
    drawn = [(title, image, shown_layers(model, image)) for title, image in chosen]
    columns = max(
        1, min(max_channels, max((m.shape[0] for *_, ls in drawn for _, m in ls), default=1))
    )
    heights = [1.25 * max(1, len(layers)) + 0.5 for *_, layers in drawn]
    fig = Figure(figsize=(1.1 * (columns + 1), sum(heights)), layout="constrained")
    parts = fig.subfigures(len(drawn), 1, squeeze=False, height_ratios=heights)[:, 0]
    for part, (title, image, layers) in zip(parts, drawn, strict=True):
        _feature_rows(part, image, layers, columns, title)
    return fig


def _feature_rows(
    fig: Any, image: torch.Tensor, layers: list[tuple[str, torch.Tensor]], columns: int, title: str
) -> None:
    rows = max(1, len(layers))  # a network without convolutions: the input alone
    axes = fig.subplots(rows, columns + 1, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    show_input(axes[0, 0], image)
    axes[0, 0].set_title("input", fontsize=8)
    for row, (name, maps) in enumerate(layers):
        axes[row, 1].set_title(f"{name} {'x'.join(map(str, maps.shape))}", fontsize=8, loc="left")
        for c in range(min(columns, maps.shape[0])):
            axes[row, c + 1].imshow(maps[c].numpy(), cmap="viridis")
    if title:
        fig.suptitle(title, fontsize=10)


def plot_activation_pair(
    model: nn.Module, images: Sequence[torch.Tensor], names: Sequence[str], max_channels: int = 8
) -> Figure:
    """Two (or more) inputs side by side, each with its per-layer activations stacked below
    (at most :data:`MAX_LAYERS` layers, as :func:`plot_feature_maps_of` shows them).

    For example a pullover and a coat: where do their first and second layers differ?
    """
    per_input = [shown_layers(model, image) for image in images]
    rows = 1 + sum(min(max_channels, maps.shape[0]) > 0 for _, maps in per_input[0])
    columns = max_channels
    fig = Figure(figsize=(1.0 * columns * len(images), 1.1 * rows + 0.5), layout="constrained")
    subfigs = fig.subfigures(1, len(images), squeeze=False)[0]
    for subfig, image, name, layers in zip(subfigs, images, names, per_input, strict=True):
        axes = subfig.subplots(rows, columns, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        show_input(axes[0, 0], image)
        subfig.suptitle(name, fontsize=10)
        for row, (layer, maps) in enumerate(layers, start=1):
            axes[row, 0].set_title(layer, fontsize=7, loc="left")
            for c in range(min(columns, maps.shape[0])):
                axes[row, c].imshow(maps[c].numpy(), cmap="viridis")
    return fig


def plot_panels(panels: Sequence[tuple[str, torch.Tensor]], title: str = "") -> Figure:
    """2-D tensors side by side, each with its title: images in gray, signed responses
    (anything with negative values, or all zero) on a red-blue scale centred at zero."""
    fig = Figure(figsize=(1.9 * len(panels), 2.3), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, values) in zip(axes, panels, strict=True):
        array = values.detach().cpu().float().numpy()
        if array.min() < 0 or not array.any():
            limit = float(np.abs(array).max()) or 1.0
            ax.imshow(array, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(array, cmap="gray")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_input(ax: Any, image: torch.Tensor) -> None:
    """A model input (C, H, W) in [0, 1] on ``ax``: grayscale, or RGB for 3 channels."""
    if image.shape[0] == 3:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
    else:
        ax.imshow(image[0].cpu().numpy(), cmap="gray")
