"""Pictures as matplotlib Figures; writing files is the caller's job."""

from cnnlab.viz.curves import plot_curves

__all__ = ["plot_curves"]
