"""Pictures as matplotlib Figures; writing files is the caller's job. No pyplot anywhere."""

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
