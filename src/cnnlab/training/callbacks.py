"""Your own hooks into a run: ``cnnlab.train(config, callbacks=[...])``.

A callback is any object with some of these methods, called on the process that writes
the run directory (rank 0 under torchrun):

- ``on_train_start(run)``: before the first step (of this process: a resumed run's too);
  return True to train no further;
- ``on_epoch_start(run)``: before an epoch's (first remaining) step;
- ``on_step(run)``: after each optimizer step (``run.state.step`` counts them);
- ``on_point(run, row)``: a point of the training curve (5 per epoch, as the book plots:
  ``row`` has ``x`` in epochs, ``train_loss``, ``train_acc``);
- ``on_evaluated(run, row)``: an epoch's row once it is evaluated, before its checkpoint
  is written (what a resumed run must find already recorded: the best weights);
- ``on_epoch_end(run, row)``: an epoch's row as ``metrics.jsonl`` has it (``test_acc``,
  ``val_acc`` with ``--val-size``, ...), after its checkpoint is written; return True to
  stop the run there, as early stopping stops it (the model is saved, and ``--resume RUN
  --epochs N`` goes on);
- ``on_train_end(run, result)``: the finished run's :class:`~cnnlab.training.TrainResult`.

``run`` is the :class:`~cnnlab.training.Run`: ``run.state`` (epoch, step, history),
``run.model``, ``run.optimizer``, ``run.run_dir``. An exception in a callback stops the run
with an error that names the callback; the last checkpoint is left whole.

>>> class StopAt:
...     def __init__(self, target): self.target = target
...     def on_epoch_end(self, run, row): return row["test_acc"] >= self.target
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cnnlab.errors import CnnlabError

HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "on_step",
    "on_point",
    "on_evaluated",
    "on_epoch_end",
    "on_train_end",
)


class CallbackError(CnnlabError):
    """A callback raised: the run stopped, its last checkpoint whole."""


class Callbacks:
    """A run's callbacks, each hook called on each in order (the methods looked up once:
    ``on_step`` is called every step)."""

    def __init__(self, callbacks: Iterable[Any] = ()) -> None:
        self.items = list(callbacks)
        for callback in self.items:
            if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
                raise CnnlabError(
                    f"callback {describe(callback)} has none of the methods {', '.join(HOOKS)}"
                )
        self.methods = {
            hook: [(c, getattr(c, hook)) for c in self.items if getattr(c, hook, None) is not None]
            for hook in HOOKS
        }

    def call(self, hook: str, *args: Any) -> list[Any]:
        """``hook(*args)`` of every callback that has it; their return values."""
        returned = []
        for callback, method in self.methods[hook]:
            try:
                returned.append(method(*args))
            except Exception as e:
                raise CallbackError(
                    f"callback {describe(callback)}.{hook} raised {type(e).__name__}: {e}; the "
                    "run stopped and its last checkpoint is whole (cnnlab train --resume RUN "
                    "goes on from it)"
                ) from e
        return returned

    def asking_to_stop(self, hook: str, *args: Any) -> list[Any]:
        """Call ``hook`` (``on_train_start`` or ``on_epoch_end``); the callbacks whose answer
        asks the run to stop."""
        asking = []
        for callback, value in zip(self.with_hook(hook), self.call(hook, *args), strict=True):
            try:
                if value:  # True, numpy.True_, 1: any truthy answer stops
                    asking.append(callback)
            except (TypeError, ValueError) as e:  # e.g. an array of several values
                raise CallbackError(
                    f"callback {describe(callback)}.{hook} returned {type(value).__name__}, "
                    f"which is neither true nor false ({e}); return True to stop the run"
                ) from None
        return asking

    def with_hook(self, hook: str) -> list[Any]:
        """The callbacks that have ``hook``, in order."""
        return [callback for callback, _ in self.methods[hook]]


def describe(callback: Any) -> str:
    return type(callback).__qualname__
