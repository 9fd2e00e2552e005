"""Pictures as matplotlib Figures; writing files is the caller's job. No pyplot anywhere.

The names below load their module on first use, so ``cnnlab.viz.kinds`` (what the command
line lists) brings in neither torch nor matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.lazy import lazy_names

if TYPE_CHECKING:
    from cnnlab.viz.animate import Animation, animate
    from cnnlab.viz.curves import plot_curves, plot_run_comparison
    from cnnlab.viz.evaluation import plot_confusion, plot_mistakes, plot_per_class_accuracy
    from cnnlab.viz.explorer import Explorer, explore_run, explorer_page
    from cnnlab.viz.features import (
        conv_activations,
        plot_activation_pair,
        plot_feature_maps,
        plot_feature_maps_of,
        plot_kernels,
        plot_panels,
    )
    from cnnlab.viz.live import LiveCurves, figure_bytes, in_notebook, show_png

__getattr__ = lazy_names(
    "cnnlab.viz",
    {
        "Animation": "animate",
        "animate": "animate",
        "plot_curves": "curves",
        "plot_run_comparison": "curves",
        "plot_confusion": "evaluation",
        "plot_mistakes": "evaluation",
        "plot_per_class_accuracy": "evaluation",
        "Explorer": "explorer",
        "explore_run": "explorer",
        "explorer_page": "explorer",
        "conv_activations": "features",
        "plot_activation_pair": "features",
        "plot_feature_maps": "features",
        "plot_feature_maps_of": "features",
        "plot_kernels": "features",
        "plot_panels": "features",
        "LiveCurves": "live",
        "figure_bytes": "live",
        "in_notebook": "live",
        "show_png": "live",
    },
)

__all__ = [
    "Animation",
    "Explorer",
    "LiveCurves",
    "animate",
    "conv_activations",
    "explore_run",
    "explorer_page",
    "figure_bytes",
    "in_notebook",
    "plot_activation_pair",
    "plot_confusion",
    "plot_curves",
    "plot_feature_maps",
    "plot_feature_maps_of",
    "plot_kernels",
    "plot_mistakes",
    "plot_panels",
    "plot_per_class_accuracy",
    "plot_run_comparison",
    "show_png",
]
