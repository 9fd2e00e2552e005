"""A trained network in the browser: one self-contained HTML page that runs the saved
model's forward pass in plain JavaScript (``explorer.js`` beside this file), on embedded
test images or on a drawing, and shows every layer's output.

The page holds the layers as a list of plain operations (batch norm folded into a scale and
shift per channel, dropout left out: the model in eval mode), the weights as base64
float32, the first N test images as base64 uint8, and each layer's receptive field from
``cnnlab.ops.trace``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import operator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from cnnlab import layers
from cnnlab.models.modern import Resize
from cnnlab.ops import Layer, trace

CONVS = (nn.Conv2d, layers.Conv2d)
POOLS = {"max": (nn.MaxPool2d, layers.MaxPool2d), "avg": (nn.AvgPool2d, layers.AvgPool2d)}
SUPPORTED = (
    "Conv2d, BatchNorm1d/2d, Sigmoid, ReLU, Tanh, MaxPool2d, AvgPool2d, global average "
    "pooling, Flatten, Linear, Dropout, additions and channel concatenation"
)


def _floats(t: torch.Tensor) -> str:
    """Little-endian float32 bytes, base64: what the page decodes into a Float32Array."""
    array = t.detach().cpu().to(torch.float32).contiguous().numpy().astype("<f4")
    return base64.b64encode(array.tobytes()).decode()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, tuple | list) else (int(v), int(v))


MAX_PARAMETERS = 16_000_000  # a page holds its weights: 16 M floats are 85 MB of base64


def model_spec(model: nn.Module, input_shape: list[int]) -> list[dict[str, Any]]:
    """The layers of ``model`` as the page's operations, each with its output shape: a
    Sequential layer by layer (with the receptive field of one output pixel), any other
    network as the graph ``torch.fx`` traces, each operation naming its inputs (residual
    additions, channel concatenation)."""
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"the explorer holds the weights in its page, and {count:,} parameters would make "
            f"it {count * 16 / 3 / 1e6:.0f} MB (it takes up to {MAX_PARAMETERS:,})"
        )
    model = model.eval()
    if isinstance(model, nn.Sequential) and all(_known(m) for m in model):
        return _sequential_spec(model, input_shape)
    return _graph_spec(model, input_shape)


def _known(module: nn.Module) -> bool:
    """Whether ``module`` is one operation of the page (not a block of several)."""
    return not list(module.children())


def _sequential_spec(model: nn.Sequential, input_shape: list[int]) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = []
    stack: list[Layer] = []  # the conv and pooling layers so far, for trace()
    x = torch.zeros(1, *input_shape)
    for module in model:
        entry = _module_entry(module, tuple(x.shape[1:]))
        with torch.no_grad():
            x = module(x)
        if entry is None:
            continue  # eval mode: the identity
        if entry["op"] == "conv" or entry["op"].endswith("pool"):
            kind = "conv" if entry["op"] == "conv" else "pool"
            kernel = entry["kernel"][2:] if kind == "conv" else entry["kernel"]
            dilation = entry.get("dilation", (1, 1))
            stack.append(Layer(kind, _pair(kernel), entry["stride"], entry["padding"], dilation))
        shape = list(x.shape[1:])
        entry["name"], entry["out"] = type(module).__name__, shape
        if len(shape) == 3 and stack and entry["op"] != "resize":
            step = trace((input_shape[1], input_shape[2]), stack)[-1]
            entry["field"] = {
                "size": [step.field_h.size, step.field_w.size],
                "jump": [step.field_h.jump, step.field_w.jump],
                "start": [step.field_h.start, step.field_w.start],
                "conv": max(i for i, e in enumerate([*spec, entry]) if e["op"] == "conv"),
            }
        spec.append(entry)
    return spec


def _module_entry(module: nn.Module, given: tuple[int, ...]) -> dict[str, Any] | None:
    """One module as the page's operation on an input of shape ``given`` (C, H, W or
    features); None for one that eval mode makes the identity; ValueError naming what the
    page cannot compute."""
    if isinstance(module, CONVS):
        zeros = getattr(module, "padding_mode", "zeros") == "zeros"
        if module.groups != 1 or not isinstance(module.padding, tuple | list) or not zeros:
            raise ValueError(
                f"the explorer runs convolutions with groups=1 and numeric zero padding "
                f"(padding_mode='zeros'), got {module}"
            )
        stride, padding, dilation = map(_pair, (module.stride, module.padding, module.dilation))
        return {
            "op": "conv",
            "weight": _floats(module.weight),
            "bias": None if module.bias is None else _floats(module.bias),
            "kernel": list(module.weight.shape),
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
        }
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            raise ValueError(
                f"the explorer runs batch norm with running statistics, got {module} "
                "(track_running_stats=False normalises each batch by its own)"
            )
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias
        return {"op": "affine", "scale": _floats(scale), "shift": _floats(shift)}
    if isinstance(module, nn.Sigmoid | nn.ReLU | nn.Tanh):
        return {"op": type(module).__name__.lower()}
    if isinstance(module, POOLS["max"] + POOLS["avg"]):
        kind = "max" if isinstance(module, POOLS["max"]) else "avg"
        plain = getattr(module, "dilation", 1) in (1, (1, 1)) and getattr(
            module, "count_include_pad", True
        )
        if getattr(module, "ceil_mode", False) or not plain:
            raise ValueError(
                f"the explorer runs pooling without ceil_mode, dilation or "
                f"count_include_pad=False, got {module}"
            )
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        return {
            "op": kind + "pool",
            "kernel": kernel,
            "stride": stride,
            "padding": _pair(module.padding),
        }
    if isinstance(module, nn.AdaptiveAvgPool2d) and _pair(module.output_size) == (1, 1):
        return {"op": "gap"}
    if isinstance(module, nn.Flatten) and module.start_dim in (1, -len(given) - 1):
        return {"op": "flatten"}
    if isinstance(module, nn.Linear):
        return {
            "op": "linear",
            "weight": _floats(module.weight),
            "bias": None if module.bias is None else _floats(module.bias),
            "wshape": list(module.weight.shape),
        }
    if isinstance(module, nn.Dropout | nn.Identity):
        return None
    if isinstance(module, Resize):
        return {"op": "resize", "size": module.size}
    raise ValueError(f"the explorer cannot run {type(module).__name__}; it runs {SUPPORTED}")


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping cnnlab's Resize whole (its size test is not traceable)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Resize) or super().is_leaf_module(m, qualname)


FUNCTIONS: dict[Any, str] = {
    operator.add: "add",
    torch.add: "add",
    torch.cat: "cat",
    torch.relu: "relu",
    F.relu: "relu",
    torch.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    torch.flatten: "flatten",
}
METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "flatten": "flatten"}


def _graph_spec(model: nn.Module, input_shape: list[int]) -> list[dict[str, Any]]:
    """A network that is not a plain chain, as the graph torch.fx traces: one operation per
    node, its ``inputs`` the indices of the operations it reads (-1: the image)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        raise ValueError(f"the explorer cannot trace {type(model).__name__}: {e}") from None
    module = torch.fx.GraphModule(model, graph)
    ShapeProp(module).propagate(torch.zeros(1, *input_shape))
    index: dict[str, int] = {}  # node -> the operation whose output it is (-1: the image)
    spec: list[dict[str, Any]] = []
    for node in graph.nodes:
        if node.op == "placeholder":
            index[node.name] = -1
            continue
        if node.op == "output":
            result = node.args[0]
            if not isinstance(result, torch.fx.Node) or index.get(result.name) != len(spec) - 1:
                raise ValueError("the explorer runs networks whose output is their last operation")
            break
        sources = [a for a in _flat(node.args) if isinstance(a, torch.fx.Node)]
        given = tuple(sources[0].meta["tensor_meta"].shape[1:]) if sources else ()
        entry = _node_entry(node, module, given)
        if entry is None:  # the identity in eval mode: its output is its input's
            index[node.name] = index[sources[0].name]
            continue
        entry["inputs"] = [index[a.name] for a in sources]
        entry["name"] = node.name
        entry["out"] = list(node.meta["tensor_meta"].shape[1:])
        index[node.name] = len(spec)
        spec.append(entry)
    return spec


def _node_entry(
    node: torch.fx.Node, module: torch.fx.GraphModule, given: tuple[int, ...]
) -> dict[str, Any] | None:
    if node.op == "call_module":
        return _module_entry(module.get_submodule(str(node.target)), given)
    if node.op == "call_function" and node.target in (F.max_pool2d, F.avg_pool2d):
        return _functional_pool(node)
    op = FUNCTIONS.get(node.target) if node.op == "call_function" else None
    if node.op == "call_method":
        op = METHODS.get(str(node.target))
    if op == "cat" and node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) != 1:
        op = None  # channels only
    if op == "flatten" and (node.args[1:] or [node.kwargs.get("start_dim", 0)])[0] != 1:
        op = None
    if op is None:
        what = node.target if node.op == "call_method" else node.name
        raise ValueError(
            f"the explorer cannot run {what} (a function its forward calls); it runs {SUPPORTED}"
        )
    return {"op": op}


def _functional_pool(node: torch.fx.Node) -> dict[str, Any]:
    """``F.max_pool2d(x, kernel, stride, padding)`` (or ``avg_pool2d``) as the pooling
    module with the same arguments would be."""
    names = ("input", "kernel_size", "stride", "padding")
    given = {**dict(zip(names, node.args, strict=False)), **node.kwargs}
    kind: Any = nn.MaxPool2d if node.target is F.max_pool2d else nn.AvgPool2d
    options = {k: v for k, v in given.items() if k != "input"}
    try:
        pool = kind(**options)
    except TypeError as e:
        raise ValueError(f"the explorer cannot run {node.name}: {e}") from None
    return _module_entry(pool, ()) or {}


def _flat(args: Any) -> list[Any]:
    """The arguments of a node, lists and tuples opened (torch.cat's list of tensors)."""
    out: list[Any] = []
    for a in args:
        out += _flat(a) if isinstance(a, list | tuple) else [a]
    return out


def script_json(value: Any) -> str:
    """``value`` as JSON that the HTML parser cannot end or comment out inside a
    ``<script>`` element: ``<``, ``>`` and ``&`` (and U+2028/9, line ends to older
    JavaScript) as ``\\uXXXX`` escapes, which JSON.parse reads back as the same text.

    >>> script_json({"classes": ["</script><!--", "a&b"]})
    '{"classes":["\\\\u003c/script\\\\u003e\\\\u003c!--","a\\\\u0026b"]}'
    """
    text = json.dumps(value, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def csp(script: str) -> str:
    """The generated page's Content-Security-Policy: nothing loaded from anywhere, no
    script but its own (by hash), inline styles (the page's and the bars' widths)."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "img-src data:"
    )


@dataclass
class Explorer:
    """The page; a notebook shows it inline."""

    html: str

    def _repr_html_(self) -> str:
        # sandboxed: the page's script runs, but not with the notebook page's origin
        return (
            f'<iframe sandbox="allow-scripts" srcdoc="{html.escape(self.html)}" '
            'width="100%" height="900" style="border:0"></iframe>'
        )


def explorer_page(
    model: nn.Module, meta: dict[str, Any], images: np.ndarray, labels: np.ndarray
) -> Explorer:
    """The page for ``model`` with its sidecar ``meta`` and test ``images`` uint8, (N, H, W)
    grayscale or (N, 3, H, W) RGB."""
    shape = list(meta["preprocessing"]["input_shape"])
    per_image = tuple(images.shape[1:]) if images.ndim == 4 else (1, *images.shape[1:])
    if shape[0] not in (1, 3) or per_image != tuple(shape):
        raise ValueError(
            f"images are {per_image}, the model takes {tuple(shape)} (grayscale or RGB)"
        )
    data = {
        "model": meta.get("model", "model"),
        "classes": list(meta["classes"]),
        "input": shape,
        "tta": bool(meta.get("tta", False)),
        "layers": model_spec(model, shape),
        "images": base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode(),
        "labels": [int(v) for v in labels],
    }
    script = resources.files("cnnlab.viz").joinpath("explorer.js").read_text()
    title = html.escape(f"cnnlab explorer: {data['model']}")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="{csp(script)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head><body>
<h1>{title}</h1>
<div id="top">
 <section id="source"><h2>input</h2>
  <div id="canvas-box"><canvas id="input" width="{shape[2]}" height="{shape[1]}"></canvas>
   <div id="field"></div></div>
  <div><button id="prev" type="button">&lt;</button>
   test image <input id="index" type="number" min="0" max="{len(images) - 1}" value="0">
   <button id="next" type="button">&gt;</button> <span id="truth"></span></div>
  <div><button id="clear" type="button">clear and draw</button> <span class="muted">or draw
   on the image with the mouse or a finger</span></div>
 </section>
 <section id="result"><h2>prediction: <span id="prediction"></span></h2><div id="probs"></div>
  <h2>kernel</h2><div id="kernel" class="muted">hover over a pixel of a layer's output</div>
 </section>
</div>
<div id="layers"></div>
<script id="model-data" type="application/json">{script_json(data)}</script>
<script>{script}</script>
</body></html>
"""
    return Explorer(page)


def explore_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    n: int = 300,
    trust: bool = False,
    offline: bool | None = None,
) -> Explorer:
    """The explorer page for a saved run, with its dataset's first ``n`` test images."""
    from cnnlab.data.folder import splits_of_run
    from cnnlab.errors import ConfigError
    from cnnlab.logs import log
    from cnnlab.rundir import data_dir_of, load_model

    if n < 1:
        raise ConfigError(f"--images must be at least 1, got {n}")
    model, meta = load_model(run_dir, trust_model_file=trust)
    _, test, _, _ = splits_of_run(meta, data_dir_of(run_dir, data_dir), offline)
    if n > len(test.labels):
        log.info(
            "--images %d: the test set has %d images; the page holds all of them",
            n,
            len(test.labels),
        )
    try:
        return explorer_page(model, meta, test.images[:n], test.labels[:n])
    except ValueError as e:
        raise ConfigError(f"{run_dir}: {e}") from None


STYLE = """
body{font:14px system-ui,sans-serif;margin:1em 2em;color:#111827}
h1{font-size:20px} h2{font-size:15px;margin:.6em 0 .3em}
#top{display:flex;gap:3em;flex-wrap:wrap}
#canvas-box{position:relative;width:224px;height:224px;touch-action:none}
#input{width:224px;height:224px;image-rendering:pixelated;cursor:crosshair;background:#000}
#field{position:absolute;border:2px solid #f59e0b;pointer-events:none;display:none}
.muted{color:#6b7280}
.bar{display:flex;align-items:center;gap:.5em;margin:2px 0}
.bar span{width:7em;text-align:right} .bar div{height:12px;background:#2563eb}
.layer{margin:1em 0} .maps{display:flex;flex-wrap:wrap;gap:4px}
.maps canvas{image-rendering:pixelated;border:1px solid #d1d5db}
.dense{display:flex;align-items:flex-end;gap:1px;height:60px}
.dense div{width:3px;background:#2563eb}
#kernel canvas{width:50px;height:50px;image-rendering:pixelated;margin:2px;border:1px solid #d1d5db}
"""
