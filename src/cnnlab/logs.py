"""cnnlab's logger: plain message lines on stdout, the way the book prints results."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("cnnlab")


def ensure_logging() -> None:
    """Send cnnlab's lines to stdout unless the application configured logging itself."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
