"""What stops a run early: a signal (checkpoint, then exit), or a loss that blew up."""

from __future__ import annotations

import signal
import threading
from typing import Any

from cnnlab.errors import CnnlabError

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
