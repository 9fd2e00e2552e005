"""A finished run as pictures: the figures of ``cnnlab viz`` and the page of ``cnnlab report``."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.data import ImageSet
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.evaluation import Evaluation, evaluate_saved_run
from cnnlab.fsutil import atomic_write_bytes, quote
from cnnlab.layers import CONV_TYPES
from cnnlab.predict import load_image
from cnnlab.rundir import EXPLORER, read_config, read_metrics, settings
from cnnlab.training.metrics import per_class_accuracy
from cnnlab.viz import (
    figure_bytes,
    plot_activation_pair,
    plot_confusion,
    plot_curves,
    plot_feature_maps,
    plot_feature_maps_of,
    plot_kernels,
    plot_mistakes,
    plot_per_class_accuracy,
    plot_run_comparison,
)
from cnnlab.viz.kinds import FIGURES

KINDS = FIGURES
PAIR = ("Pullover", "Coat")  # the chapter's "pullover and coat" comparison


@dataclass
class RunView:
    """Everything the figures of one run need, loaded once."""

    run_dir: Path
    config: dict[str, Any]
    points: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    evaluation: Evaluation

    @classmethod
    def load(
        cls,
        run_dir: Path,
        data_dir: str | None = None,
        trust: bool = False,
        progress: bool = False,
        offline: bool | None = None,
    ) -> RunView:
        evaluation = evaluate_saved_run(
            run_dir, data_dir, trust_model_file=trust, progress=progress, offline=offline
        )
        points, epochs = read_metrics(run_dir)
        return cls(run_dir, read_config(run_dir), points, epochs, evaluation)

    @property
    def model(self) -> nn.Module:
        return self.evaluation.model

    @property
    def meta(self) -> dict[str, Any]:
        return self.evaluation.meta

    @property
    def test(self) -> ImageSet:
        return self.evaluation.test

    @property
    def probs(self) -> np.ndarray:
        """(N, classes) test-set probabilities."""
        return self.evaluation.probs.numpy()

    @property
    def classes(self) -> list[str]:
        return self.evaluation.classes

    @property
    def confusion(self) -> torch.Tensor:
        return self.evaluation.confusion

    def test_input(self, index: int) -> tuple[str, torch.Tensor]:
        """A name and test image ``index`` as (C, H, W) in [0, 1], as the model sees it."""
        if not 0 <= index < len(self.test.labels):
            raise ConfigError(f"test index {index} out of range: 0..{len(self.test.labels) - 1}")
        image = torch.from_numpy(self.test.images[index]).float().div(255)
        image = image.unsqueeze(0) if image.ndim == 2 else image
        return f"test #{index}: {self.classes[self.test.labels[index]]}", image

    def default_pair(self) -> list[int]:
        """The first test pullover and coat, or the first two images of different classes."""
        labels = self.test.labels
        if all(name in self.classes for name in PAIR):
            return [int(np.flatnonzero(labels == self.classes.index(n))[0]) for n in PAIR]
        second = int(np.flatnonzero(labels != labels[0])[0])
        return [0, second]


def inputs(
    view: RunView, indices: Sequence[int], files: Sequence[Path], invert: bool
) -> list[tuple[str, torch.Tensor]]:
    """Named model inputs from test indices and image files (default: the pullover/coat pair)."""
    channels, height, width = view.meta["preprocessing"]["input_shape"]
    named = [view.test_input(i) for i in indices]
    named += [(path.name, load_image(path, (height, width), invert, channels)) for path in files]
    return named or [view.test_input(i) for i in view.default_pair()]


def make_figure(
    view: RunView,
    kind: str,
    chosen: Sequence[tuple[str, torch.Tensor]] = (),
    others: Sequence[Path] = (),
) -> Figure:
    """The figure ``kind`` (one of KINDS) of ``view``."""
    if kind == "curves":
        return plot_curves(view.points, view.epochs)
    if kind == "runs":
        runs = {view.run_dir.name: view.epochs}
        runs.update({p.name: read_metrics(p)[1] for p in others})
        return plot_run_comparison(runs)
    if kind in ("confusion", "confusion-normalized"):
        return plot_confusion(view.confusion.numpy(), view.classes, kind.endswith("normalized"))
    if kind == "per-class":
        return plot_per_class_accuracy(per_class_accuracy(view.confusion).numpy(), view.classes)
    if kind == "mistakes":
        return plot_mistakes(view.test.images, view.test.labels, view.probs, view.classes)
    if kind == "kernels":
        first = next((m for m in view.model.modules() if isinstance(m, CONV_TYPES)), None)
        if first is None:
            raise ConfigError("the model has no convolution, so no kernels to draw")
        return plot_kernels(first.weight)
    if kind == "feature-maps":  # every chosen image, one below the other
        return plot_feature_maps_of(view.model, chosen)
    if kind == "activations":
        return plot_activation_pair(view.model, [c[1] for c in chosen], [c[0] for c in chosen])
    raise ConfigError(f"unknown figure {kind!r}; choose one of: {', '.join(KINDS)}")


def _img(fig: Figure, alt: str) -> str:
    data = base64.b64encode(figure_bytes(fig)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


# The report runs no script and loads nothing: whatever a run directory holds stays text.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1rem 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; }
.muted { color: #666; } img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { padding: 0.15rem 0.8rem;
      border-bottom: 1px solid #eee; text-align: left; }
.metrics { display: flex; gap: 1rem; flex-wrap: wrap; }
.metric { background: #f4f6fa; border-radius: 8px; padding: 0.6rem 1rem; min-width: 8rem; }
.metric b { display: block; font-size: 1.4rem; }
.row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
.row > div { flex: 1 1 420px; }
"""


# Settings that say nothing about a run at these values (off, none, one process).
UNSAID: dict[str, Any] = {
    "data_dir": None, "out_dir": None, "resume": None, "checkpoint_every": 0, "nproc": 1,
    "max_restarts": 0, "val_size": 0, "early_stop": 0, "subset": 0, "augment": "",
    "model_options": "", "label_smoothing": 0.0, "weight_decay": 0.0, "tta": False,
    "compile": False, "tensorboard": False, "quiet": False, "trust_model_file": False,
    "channels": 0, "image_size": "", "fast": None,
}  # fmt: skip


def config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's table of a run's settings and environment: only what applies to the
    run (momentum only for the momentum optimizers, a folder's channels only for a folder),
    each value in words.

    >>> config_rows({"optimizer": "sgd", "momentum": 0.9, "lr": 0.1, "model_options": {"k": 3}})
    [('optimizer', 'sgd'), ('lr', '0.1'), ('model options', 'k=3')]
    """
    rows = []
    for key, value in {**settings(config), **config.get("environment", {})}.items():
        if key in UNSAID and value == UNSAID[key]:
            continue
        if key == "momentum" and config.get("optimizer") not in ("momentum", "nesterov"):
            continue
        rows.append((key.replace("_", " "), _words(value)))
    return rows


def _words(value: Any) -> str:
    """A setting's value as a person writes it: true/false as yes/no, tables as key=value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_words(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(_words(v) for v in value)
    return str(value)


def _not_explorable(view: RunView) -> str | None:
    """Why ``cnnlab explore`` cannot open the run's network, or None when it can."""
    from cnnlab.viz.explorer import model_spec

    try:
        model_spec(view.model, view.meta["preprocessing"]["input_shape"])
    except ValueError as e:
        return str(e)
    return None


def render_report(view: RunView, explorer: str | None = None) -> str:
    """The report as one self-contained HTML page (images embedded, no network), linking
    the run's explorer page at the relative address ``explorer`` when there is one."""
    final = view.epochs[-1] if view.epochs else {}
    cells = [
        ("test acc", f"{final.get('test_acc', float('nan')):.3f}"),
        ("train acc", f"{final.get('train_acc', float('nan')):.3f}"),
        ("train loss", f"{final.get('train_loss', float('nan')):.3f}"),
        ("epochs", str(len(view.epochs))),
        ("examples/sec", f"{final.get('examples_per_sec', 0):,.0f}"),
    ]
    metrics = "".join(f'<div class="metric">{k}<b>{v}</b></div>' for k, v in cells)
    config = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in config_rows(view.config)
    )
    chosen = inputs(view, [], [], invert=False)
    feature_maps = "".join(
        _img(plot_feature_maps(view.model, image, title=name), f"feature maps of {name}")
        for name, image in chosen
    )
    has_conv = any(isinstance(m, CONV_TYPES) for m in view.model.modules())
    kernels = (
        _img(make_figure(view, "kernels"), "conv1 kernels")
        if has_conv
        else '<p class="muted">The network has no convolution.</p>'
    )
    sections = [
        ("Training curves", _img(make_figure(view, "curves"), "training curves")),
        (
            "Confusion matrix",
            '<div class="row"><div>'
            + _img(make_figure(view, "confusion"), "confusion matrix, counts")
            + "</div><div>"
            + _img(make_figure(view, "confusion-normalized"), "confusion matrix, row-normalised")
            + "</div></div>",
        ),
        ("Per-class accuracy", _img(make_figure(view, "per-class"), "per-class accuracy")),
        ("Most confidently wrong", _img(make_figure(view, "mistakes"), "mistakes")),
        ("First-layer kernels", kernels),
        ("Feature maps", feature_maps),
        (
            "Two inputs side by side",
            _img(make_figure(view, "activations", chosen), "activations of two inputs"),
        ),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    if explorer:
        link = (
            f'<p id="explorer"><a href="{html.escape(explorer)}">Explore the network in '
            "your browser</a>: every layer's output for a test image or your drawing</p>"
        )
    elif (why := _not_explorable(view)) is None:
        link = (
            f'<p class="muted">Run <code>cnnlab explore {html.escape(quote(view.run_dir))}'
            "</code> for an in-browser explorer of this network.</p>"
        )
    else:
        link = f'<p class="muted">The in-browser explorer cannot run it: {html.escape(why)}.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab run {html.escape(view.run_dir.name)}</title><style>{STYLE}</style></head>
<body><h1>cnnlab run {html.escape(view.run_dir.name)}</h1>
<p class="muted">{html.escape(view.meta["model"])} on {html.escape(view.meta["dataset"])},
report written {datetime.now():%Y-%m-%d %H:%M}</p>
<div class="metrics">{metrics}</div>{link}{body}
<h2>Configuration</h2><table>{config}</table>
</body></html>
"""


def write_report(
    run_dir: Path,
    data_dir: str | None = None,
    out: Path | None = None,
    trust: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``report.html`` (or ``out``) for ``run_dir``; return its path."""
    view = RunView.load(run_dir, data_dir, trust, progress)
    path = out or run_dir / "report.html"
    page = run_dir / EXPLORER  # where `cnnlab explore RUN` writes by default
    explorer = os.path.relpath(page, path.parent) if page.exists() else None
    try:
        atomic_write_bytes(path, render_report(view, explorer).encode())
    except OSError as e:
        raise CnnlabError(f"cannot write {path}: {e.strerror}") from e
    return path
