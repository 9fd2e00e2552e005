"""A training curve that redraws in place in a Jupyter notebook (the book's Animator).

Outside a notebook it does nothing: a terminal never sees ``<Figure ...>`` and no
display is needed. The figure is sent as PNG bytes, so the user's matplotlib backend
and global settings are left alone.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Any

from cnnlab.viz.curves import plot_curves


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), False in a terminal or script."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveCurves:
    """Redraws the book's figure in one notebook output cell at every update."""

    def __init__(self) -> None:
        self.handle: Any = None

    def update(self, points: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> None:
        from IPython.display import Image, display  # type: ignore[attr-defined]

        buffer = io.BytesIO()
        plot_curves(points, epochs).savefig(buffer, format="png", dpi=100)
        image = Image(data=buffer.getvalue(), format="png")  # type: ignore[no-untyped-call]
        if self.handle is None:
            self.handle = display(image, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self.handle.update(image)
