"""What stops a run early: a signal (checkpoint, then exit), or a loss that blew up."""

from __future__ import annotations

import signal
import threading
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fsutil import quote

HANGUP = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()  # none on Windows


class Interrupted(CnnlabError):
    """SIGINT, SIGTERM or SIGHUP stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ProcessesFailed(CnnlabError):
    """The processes torchrun ran for a run failed; their own messages came before."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Diverged(CnnlabError):
    """The loss or the weights stopped being finite numbers."""


def interrupted(signum: int, epoch: int, batch: int, run_dir: object) -> Interrupted:
    """The error for a run stopped by ``signum`` at (0-based) ``epoch`` after ``batch``
    steps of it, its checkpoint saved in ``run_dir``."""
    where = f"at epoch {epoch + 1}, step {batch}"
    if batch == 0 and epoch > 0:  # between epochs
        where = f"after epoch {epoch}"
    return Interrupted(
        f"{signal.Signals(signum).name}: stopped {where}; checkpoint saved. "
        f"Resume with: cnnlab train --resume {quote(str(run_dir))}",
        signum,
    )


class StopOnSignal:
    """Turns the first SIGINT/SIGTERM/SIGHUP (a closed terminal) into a request to stop
    after the current step; a second one stops at once (KeyboardInterrupt), leaving the last
    checkpoint whole."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, *HANGUP):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
