"""Where the book's live figures go: in place in a notebook cell, else into a PNG file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cnnlab.fsutil import atomic_write_bytes
from cnnlab.viz.live import figure_bytes, in_notebook, show_png


class FigureOutput:
    """Shows one figure again and again: redrawn in one notebook output cell, or written
    to ``path`` (announced once on stderr), never printed as ``<Figure ...>``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.handle: Any = None
        self.announced = False

    def show(self, fig: Figure) -> None:
        png = figure_bytes(fig, dpi=100)
        if in_notebook():
            self.handle = show_png(png, self.handle)
            return
        if not self.announced:
            print(f"(the figure is in {self.path})", file=sys.stderr)
            self.announced = True
        atomic_write_bytes(self.path, png)
