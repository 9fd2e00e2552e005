"""The chapter's operations, frame by frame: a window sliding over a padded input, the
output cell it fills, written as a GIF, an animated SVG or an HTML page with a player.

Every number drawn comes from ``cnnlab.ops``; this module only decides where to draw it.
A frame is a list of shapes (rectangles and text) that two small writers turn into SVG or
into a PIL image, so the GIF and the SVG show the same picture.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from cnnlab import ops
from cnnlab.viz.kinds import ANIMATIONS

KINDS = ANIMATIONS
MAX_SIDE = 32  # input cells per side that still read as a picture
MAX_FRAMES = 1024
FONT = font_manager.findfont("DejaVu Sans")  # matplotlib's own font: every glyph used here
PAD_FILL, CELL_FILL, WINDOW, TARGET, BEST = "#e5e7eb", "#ffffff", "#93c5fd", "#fca5a5", "#2563eb"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str = "#374151"
    width: float = 1.0


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    size: float = 13.0
    anchor: str = "middle"  # or "start"
    color: str = "#111827"


Shape = Rect | Text


@dataclass
class Frame:
    """One window position: the cells it reads (per grid), the output cells it fills,
    the arithmetic as a caption, and the shapes drawn over the static grids."""

    reads: dict[str, list[tuple[int, int]]]  # grid name -> (row, col) cells of the padded grid
    writes: dict[str, list[tuple[int, int]]]  # output grid name -> cells it fills
    caption: str
    shapes: list[Shape] = field(default_factory=list)


@dataclass
class Grid:
    name: str
    values: np.ndarray  # (rows, cols); NaN marks padding
    x: float = 0.0
    y: float = 0.0


@dataclass
class Animation:
    """Frames of one operation; ``to_bytes("gif" | "svg" | "html")`` writes them, and a
    notebook shows the HTML player inline."""

    kind: str
    width: int
    height: int
    static: list[Shape]
    frames: list[Frame]
    cell: int
    delay_ms: int = 800

    def svg(self, animated: bool = True) -> str:
        """One SVG: the grids, then one group per frame; ``animated`` adds SMIL timing so
        any browser plays it (the HTML player drives the groups itself instead)."""
        total = self.delay_ms * len(self.frames) / 1000
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            'font-family="DejaVu Sans, sans-serif">',
            f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>',
            *map(_svg_shape, self.static),
        ]
        for i, frame in enumerate(self.frames):
            timing = ""
            if animated:
                key = ";".join("visible" if j == i else "hidden" for j in range(len(self.frames)))
                timing = (
                    f'<animate attributeName="visibility" values="{key}" dur="{total}s" '
                    'calcMode="discrete" repeatCount="indefinite"/>'
                )
            hidden = ' visibility="hidden"' if i else ""
            body = "".join(map(_svg_shape, frame.shapes))
            parts.append(f'<g class="frame"{hidden}>{timing}{body}</g>')
        return "\n".join([*parts, "</svg>"])

    def html(self) -> str:
        """A page that plays the frames, with play/pause and a step slider."""
        n = len(self.frames)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cnnlab animate {self.kind}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1em}}#controls{{margin-top:.5em}}</style>
</head><body>
{self.svg(animated=False)}
<div id="controls"><button id="play" type="button">pause</button>
<input id="step" type="range" min="0" max="{n - 1}" value="0" aria-label="step">
<span id="label">1 / {n}</span></div>
<script>
"use strict";
const frames = document.querySelectorAll("g.frame");
const step = document.getElementById("step"), play = document.getElementById("play");
let timer = null;
function show(i) {{
  frames.forEach((g, j) => g.setAttribute("visibility", j === i ? "visible" : "hidden"));
  step.value = i;
  document.getElementById("label").textContent = (i + 1) + " / " + frames.length;
}}
function start() {{
  timer = setInterval(() => show((Number(step.value) + 1) % frames.length), {self.delay_ms});
  play.textContent = "pause";
}}
function stop() {{ clearInterval(timer); timer = null; play.textContent = "play"; }}
play.addEventListener("click", () => (timer === null ? start() : stop()));
step.addEventListener("input", () => {{ stop(); show(Number(step.value)); }});
show(0); start();
</script></body></html>
"""

    def images(self) -> list[Image.Image]:
        """Each frame as an RGB picture."""
        base = Image.new("RGB", (self.width, self.height), "#ffffff")
        _draw(ImageDraw.Draw(base), self.static)
        pictures = []
        for frame in self.frames:
            image = base.copy()
            _draw(ImageDraw.Draw(image), frame.shapes)
            pictures.append(image)
        return pictures

    def gif(self) -> bytes:
        first, *rest = self.images()
        out = io.BytesIO()
        durations = [self.delay_ms] * (len(rest) + 1)
        durations[-1] *= 2  # a pause on the finished output before it starts again
        first.save(out, "GIF", save_all=True, append_images=rest, duration=durations, loop=0)
        return out.getvalue()

    def to_bytes(self, fmt: str) -> bytes:
        if fmt == "gif":
            return self.gif()
        if fmt in ("svg", "html"):
            return (self.svg() if fmt == "svg" else self.html()).encode()
        raise ValueError(f"unknown animation format {fmt!r}; write .gif, .svg or .html")

    def _repr_html_(self) -> str:  # Jupyter: the player, isolated in its own frame
        return (
            f'<iframe sandbox="allow-scripts" srcdoc="{html.escape(self.html())}" '
            f'width="{self.width + 40}" '
            f'height="{self.height + 90}" style="border:0"></iframe>'
        )


def _svg_shape(s: Shape) -> str:
    if isinstance(s, Rect):
        return (
            f'<rect x="{s.x:g}" y="{s.y:g}" width="{s.w:g}" height="{s.h:g}" '
            f'fill="{s.fill}" stroke="{s.stroke}" stroke-width="{s.width:g}"/>'
        )
    return (
        f'<text x="{s.x:g}" y="{s.y:g}" font-size="{s.size:g}" text-anchor="{s.anchor}" '
        f'dominant-baseline="central" fill="{s.color}">{html.escape(s.text)}</text>'
    )


def _draw(draw: ImageDraw.ImageDraw, shapes: Sequence[Shape]) -> None:
    for s in shapes:
        if isinstance(s, Rect):
            box = (round(s.x), round(s.y), round(s.x + s.w), round(s.y + s.h))
            fill = None if s.fill == "none" else s.fill
            outline = None if s.stroke == "none" else s.stroke
            draw.rectangle(box, fill=fill, outline=outline, width=max(1, round(s.width)))
        else:
            font = ImageFont.truetype(FONT, round(s.size))
            draw.text(
                (s.x, s.y),
                s.text,
                fill=s.color,
                font=font,
                anchor="mm" if s.anchor == "middle" else "lm",
            )


def _number(v: float) -> str:
    return "-inf" if v == -np.inf else f"{round(float(v), 2):g}"


def animate(
    kind: str = "conv",
    input: tuple[int, int] = (3, 3),
    kernel: tuple[int, int] = (2, 2),
    padding: tuple[int, int] = (0, 0),
    stride: tuple[int, int] | None = None,
    dilation: tuple[int, int] = (1, 1),
    channels: tuple[int, int] = (2, 1),
    pool: str = "max",
    values: bool | None = None,
) -> Animation:
    """Frames of ``kind`` (conv, pool, channels, conv1x1) on an input of ``input`` (h, w).

    The inputs are the book's worked examples: 0, 1, 2, ... row by row (channel c adds c),
    kernels 0, 1, 2, ... (output channel o adds o). ``values`` (default: inputs up to 6x6)
    writes the numbers into the cells. ``stride`` defaults to 1 for the convolutions and
    to the window for pooling, as PyTorch's layers, ``cnnlab shape`` and ``cnnlab.ops``
    have it (the book's pooling example, ``pool2d(X, (2, 2))`` on a 3x3 input, slides by 1:
    ``stride=(1, 1)``).

    >>> [f.caption for f in animate("conv").frames]
    ['0·0 + 1·1 + 3·2 + 4·3 = 19', '1·0 + 2·1 + 4·2 + 5·3 = 25', \
'3·0 + 4·1 + 6·2 + 7·3 = 37', '4·0 + 5·1 + 7·2 + 8·3 = 43']
    """
    if kind not in KINDS:
        raise ValueError(f"unknown animation {kind!r}; choose one of: {', '.join(KINDS)}")
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be max or avg, got {pool!r}")
    if kind == "conv1x1":
        kernel, padding, dilation = (1, 1), (0, 0), (1, 1)
    stride = stride or (kernel if kind == "pool" else (1, 1))
    if min(*input, *kernel, *stride, *dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"sizes must be positive and padding non-negative, got input {input}, kernel "
            f"{kernel}, stride {stride}, padding {padding}, dilation {dilation}"
        )
    if max(input) > MAX_SIDE:
        raise ValueError(
            f"input {input[0]}x{input[1]} is too big to animate; use at most {MAX_SIDE}x{MAX_SIDE}"
        )
    c_in, c_out = (1, 1) if kind in ("conv", "pool") else channels
    if not (1 <= c_in <= 4 and 1 <= c_out <= 4):
        raise ValueError(f"channels must be C_INxC_OUT with each 1..4, got {channels}")
    out_size = tuple(
        ops.conv_output_size(input[a], kernel[a], stride[a], padding[a], dilation[a])
        for a in (0, 1)
    )  # raises a ValueError naming the sizes when the kernel does not fit
    positions = out_size[0] * out_size[1]
    if positions * (c_out if kind == "channels" else 1) > MAX_FRAMES:
        raise ValueError(
            f"{positions} window positions are too many frames; use a smaller "
            "input or a larger stride"
        )
    h, w = input
    x = torch.arange(h * w, dtype=torch.float64).view(1, h, w) + torch.arange(c_in).view(-1, 1, 1)
    if kind == "conv1x1":
        k = torch.arange(c_out * c_in, dtype=torch.float64).view(c_out, c_in, 1, 1) - c_in // 2
    else:  # the book: kernel (o, c) is K + o + c
        k = (
            torch.arange(kernel[0] * kernel[1], dtype=torch.float64).view(1, 1, *kernel)
            + torch.arange(c_out).view(-1, 1, 1, 1)
            + torch.arange(c_in).view(1, -1, 1, 1)
        )
    if kind == "conv1x1":
        y = ops.corr2d_1x1(x, k)
    elif kind == "pool":
        pooled = ops.max_pool2d if pool == "max" else ops.avg_pool2d
        y = pooled(x, kernel, stride, padding)
    else:
        y = ops.conv2d(x[None], k, stride=stride, padding=padding, dilation=dilation)[0]
    # Each input channel's own correlation, for the caption of the channels sum.
    partials = (
        [
            ops.conv2d(
                x[None, c : c + 1],
                k[:, c : c + 1],
                stride=stride,
                padding=padding,
                dilation=dilation,
            )[0].numpy()
            for c in range(c_in)
        ]
        if kind == "channels"
        else []
    )
    show = values if values is not None else max(input) <= 6
    return _layout(kind, pool, x, k, y, partials, padding, stride, dilation, show)


def _layout(
    kind: str,
    pool: str,
    x: torch.Tensor,
    k: torch.Tensor,
    y: torch.Tensor,
    partials: list[np.ndarray],
    padding: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    show: bool,
) -> Animation:
    """Place the grids side by side (channels stacked) and build every frame's overlay."""
    cell = 34 if show else max(10, min(24, 360 // (x.shape[1] + 2 * padding[0])))
    gap, top = cell * 1.5, 52.0
    ph, pw = padding
    padded = np.pad(x.numpy(), ((0, 0), (ph, ph), (pw, pw)), constant_values=np.nan)
    c_in, c_out = x.shape[0], y.shape[0]
    inputs = [Grid(f"input channel {c}" if c_in > 1 else "input", padded[c]) for c in range(c_in)]
    kernels = (
        []
        if kind == "pool"
        else [
            Grid(f"kernel {o},{c}" if c_in * c_out > 1 else "kernel", k[o, c].numpy())
            for o in range(c_out)
            for c in range(c_in)
        ]
    )
    outputs = [
        Grid(f"output channel {o}" if c_out > 1 else "output", y[o].numpy()) for o in range(c_out)
    ]
    columns = [inputs, kernels, outputs] if kernels else [inputs, outputs]
    if kind == "conv1x1":  # the kernel is a C_out x C_in matrix of 1x1 weights
        kernels = [Grid("weights (out x in)", k[:, :, 0, 0].numpy())]
        columns = [inputs, kernels, outputs]
    x0 = gap / 2
    static: list[Shape] = []
    for column in columns:
        y0 = top
        for grid in column:
            grid.x, grid.y = x0, y0
            y0 += grid.values.shape[0] * cell + gap
        x0 += max(g.values.shape[1] for g in column) * cell + gap
    frames = _frames(kind, pool, inputs, kernels, outputs, partials, k.shape[2:], stride, dilation)
    height = max(g.y + g.values.shape[0] * cell for col in columns for g in col) + 60
    longest = max(len(f.caption) for f in frames) if show else 30
    width = max(x0 - gap / 2, 420, 7.2 * longest + 20)  # the caption fits
    titles = {
        "conv": "cross-correlation",
        "pool": f"{pool} pooling",
        "channels": "multiple input channels",
        "conv1x1": "1x1 convolution",
    }
    static.append(Text(width / 2, 18, _title(titles[kind], padding, stride, dilation), 14))
    for grid in [g for col in columns for g in col]:
        static.append(Text(grid.x, grid.y - 10, grid.name, 11, "start", "#6b7280"))
        for (r, c), v in np.ndenumerate(grid.values):
            is_pad = np.isnan(v)
            static.append(
                Rect(
                    grid.x + c * cell,
                    grid.y + r * cell,
                    cell,
                    cell,
                    PAD_FILL if is_pad else CELL_FILL,
                )
            )
            if show and not grid.name.startswith("output"):
                pad_text = "-inf" if kind == "pool" and pool == "max" else "0"
                static.append(
                    Text(
                        grid.x + (c + 0.5) * cell,
                        grid.y + (r + 0.5) * cell,
                        pad_text if is_pad else _number(v),
                        cell * 0.36,
                    )
                )
    done: list[Shape] = []
    for frame in frames:
        shapes: list[Shape] = []
        for grid in inputs + kernels + outputs:
            for r, c in frame.reads.get(grid.name, []):
                shapes.append(
                    Rect(
                        grid.x + c * cell,
                        grid.y + r * cell,
                        cell,
                        cell,
                        "none",
                        BEST if grid in inputs else WINDOW,
                        3,
                    )
                )
            for r, c in frame.writes.get(grid.name, []):
                done.append(Rect(grid.x + c * cell, grid.y + r * cell, cell, cell, "#fee2e2"))
                if show:
                    done.append(
                        Text(
                            grid.x + (c + 0.5) * cell,
                            grid.y + (r + 0.5) * cell,
                            _number(grid.values[r, c]),
                            cell * 0.36,
                        )
                    )
                shapes.append(
                    Rect(grid.x + c * cell, grid.y + r * cell, cell, cell, "none", TARGET, 3)
                )
        caption = frame.caption if show else frame.caption.split(" = ")[0].split(":")[0]
        frame.shapes = [*done, *shapes, Text(width / 2, height - 22, caption, 13)]
    return Animation(kind, round(width), round(height), static, frames, cell)


def _title(
    name: str, padding: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> str:
    return f"{name}: padding {padding[0]}x{padding[1]}, stride {stride[0]}x{stride[1]}" + (
        f", dilation {dilation[0]}x{dilation[1]}" if dilation != (1, 1) else ""
    )


def _frames(
    kind: str,
    pool: str,
    inputs: list[Grid],
    kernels: list[Grid],
    outputs: list[Grid],
    partials: list[np.ndarray],
    kernel: Sequence[int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> list[Frame]:
    """One frame per output cell (per output channel for ``channels``; all output channels
    of a pixel at once for ``conv1x1``), with the cells read and the arithmetic."""
    kh, kw = kernel
    ho, wo = outputs[0].values.shape
    frames = []
    per_channel = kind == "channels"
    for o in range(len(outputs) if per_channel else 1):
        for i in range(ho):
            for j in range(wo):
                taps = [
                    (i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1])
                    for a in range(kh)
                    for b in range(kw)
                ]
                reads = {g.name: taps for g in inputs}
                if kind == "conv1x1":
                    writes = {g.name: [(i, j)] for g in outputs}
                    reads[kernels[0].name] = [
                        (r, c) for r in range(len(outputs)) for c in range(len(inputs))
                    ]
                    weights = kernels[0].values  # (C_out, C_in)
                    caption = "; ".join(
                        " + ".join(
                            f"{_number(wv)}·{_number(g.values[i, j])}"
                            for wv, g in zip(weights[o], inputs, strict=True)
                        )
                        + f" = {_number(out.values[i, j])}"
                        for o, out in enumerate(outputs)
                    )
                    frames.append(Frame(reads, writes, caption))
                    continue
                writes = {outputs[o].name: [(i, j)]}
                value = _number(outputs[o].values[i, j])
                terms = []
                for c, grid in enumerate(inputs):
                    window = [grid.values[r, s] for r, s in taps]
                    if kind == "pool":
                        pad = "-inf" if pool == "max" else "0"
                        shown = ", ".join(pad if np.isnan(v) else _number(v) for v in window)
                        terms.append(f"{'max' if pool == 'max' else 'mean'}({shown})")
                        continue
                    kgrid = kernels[o * len(inputs) + c]
                    reads[kgrid.name] = [(a, b) for a in range(kh) for b in range(kw)]
                    products = [
                        f"{_number(0 if np.isnan(v) else v)}·{_number(kv)}"
                        for v, kv in zip(window, kgrid.values.flat, strict=True)
                    ]
                    terms.append(" + ".join(products))
                if per_channel:  # the sum of each channel's correlation
                    each = [f"{_number(p[o, i, j])} (channel {c})" for c, p in enumerate(partials)]
                    caption = " + ".join(each) + f" = {value}"
                else:
                    caption = f"{terms[0]} = {value}"
                frames.append(Frame(reads, writes, caption))
    return frames
