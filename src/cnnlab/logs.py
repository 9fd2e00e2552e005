"""cnnlab's logger: plain message lines on stdout, the way the book prints results."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("cnnlab")


class _StdoutHandler(logging.Handler):
    """Writes each message to whatever ``sys.stdout`` is at that moment (notebooks and
    test runners replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(record.getMessage() + "\n")
        sys.stdout.flush()


def ensure_logging(command_line: bool = False) -> None:
    """Send cnnlab's lines to stdout: always for the command line, and from Python
    unless the application configured logging itself."""
    if log.handlers or (logging.getLogger().handlers and not command_line):
        return
    log.addHandler(_StdoutHandler())
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.propagate = False
