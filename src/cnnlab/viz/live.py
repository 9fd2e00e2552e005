"""A training curve that redraws in place in a Jupyter notebook (the book's Animator).

Outside a notebook it does nothing: a terminal never sees ``<Figure ...>`` and no
display is needed. The figure is sent as PNG bytes, so the user's matplotlib backend
and global settings are left alone.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from cnnlab.logs import in_notebook
from cnnlab.viz.curves import plot_curves

__all__ = ["LiveCurves", "figure_bytes", "in_notebook", "show_png"]


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    """``fig`` encoded as ``fmt`` (png, svg, pdf)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def show_png(png: bytes, handle: Any = None) -> Any:
    """Show ``png`` in the notebook's output cell: a new one, or in place of ``handle``
    (what an earlier call returned). Returns the handle for the next call."""
    # Imported by name: IPython is optional, and its type hints vary between releases.
    ipython_display: Any = importlib.import_module("IPython.display")
    image = ipython_display.Image(data=png, format="png")
    if handle is None:
        return ipython_display.display(image, display_id=True)
    handle.update(image)
    return handle


class LiveCurves:
    """Redraws the book's figure in one notebook output cell at every update."""

    def __init__(self) -> None:
        self.handle: Any = None

    def update(self, points: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> None:
        png = figure_bytes(plot_curves(points, epochs), dpi=100)
        self.handle = show_png(png, self.handle)
