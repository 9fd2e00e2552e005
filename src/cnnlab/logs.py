"""cnnlab's logger: plain message lines on stdout, the way the book prints results."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("cnnlab")

# C0 and C1 control characters and DEL: a name read from a file (a class in a shared run's
# model.json, an image's file name) could otherwise move the cursor, retitle the terminal
# or start a new line of output.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def shown(text: object) -> str:
    """``text`` for a terminal, its control characters written as escapes.

    >>> shown("shirt\\x1b]0;pwned\\x07\\n")
    'shirt\\\\x1b]0;pwned\\\\x07\\\\x0a'
    """
    return str(text).translate(_CONTROLS)


class _StdoutHandler(logging.Handler):
    """Writes each message to whatever ``sys.stdout`` is at that moment (notebooks and
    test runners replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(record.getMessage() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            stdout_gone()


def stdout_gone() -> None:
    """The reader of stdout has gone (``cnnlab train | head -1``): the rest of the output
    goes to the null device, a note says so once on stderr, and the command goes on (a
    closed pipe must not end a training run before it has saved its model)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor to replace (a notebook's stream)
        return
    print(
        "note: standard output was closed (its reader has gone); cnnlab goes on without "
        "printing to it",
        file=sys.stderr,
    )


def in_notebook() -> bool:
    """True where a notebook front end shows rich output (Jupyter, JupyterLab, VS Code,
    Colab, Spyder): an IPython shell attached to a kernel, subclasses of ipykernel's shell
    included. False in a terminal (IPython's own included) or a script."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    kernel_shell = any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)
    return kernel_shell or getattr(shell, "kernel", None) is not None


def ensure_logging(command_line: bool = False) -> None:
    """Send cnnlab's lines to stdout: always for the command line, and from Python
    unless the application configured logging itself."""
    if log.handlers or (logging.getLogger().handlers and not command_line):
        return
    log.addHandler(_StdoutHandler())
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.propagate = False
