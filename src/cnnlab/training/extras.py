"""The loop's extras, as callbacks on the interface a user's own get
(:mod:`cnnlab.training.callbacks`): the metrics files, the best epoch's weights, early
stopping, the terminal's progress, the notebook's live figure. :func:`extras` lists
those a run's settings ask for; they run before the user's, on rank 0."""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm

from cnnlab.logs import in_notebook, log
from cnnlab.rundir import BEST, append_metric, save_weights, write_metrics, write_metrics_csv
from cnnlab.training.metrics import best_epoch


class MetricsFiles:
    """``metrics.jsonl`` (each curve point and epoch row as it comes) and ``metrics.csv``;
    a resumed run's restarted from what its checkpoint knows (no row counted twice)."""

    def on_train_start(self, run: Any) -> None:
        rows = sorted(
            [{"type": "point", **p} for p in run.state.points] + run.state.history,
            key=lambda r: (r["x"], 0) if r["type"] == "point" else (r["epoch"], 1),
        )
        write_metrics(run.run_dir, rows)

    def on_point(self, run: Any, row: dict[str, Any]) -> None:
        append_metric(run.run_dir, {"type": "point", **row})

    def on_evaluated(self, run: Any, row: dict[str, Any]) -> None:
        append_metric(run.run_dir, row)
        write_metrics_csv(run.run_dir, run.state.history)


class KeepBest:
    """The weights of the epoch with the best validation accuracy, kept as they come
    (``--keep best``); the finished run's model is those."""

    def on_evaluated(self, run: Any, row: dict[str, Any]) -> None:
        if best_epoch(run.state.history) == row["epoch"]:
            save_weights(run.run_dir / BEST, run.model)


def stops_early(history: list[dict[str, Any]], patience: int) -> bool:
    """True when the last ``patience`` epochs brought no better validation accuracy.

    >>> stops_early([{"val_acc": a} for a in (0.5, 0.7, 0.6, 0.7)], patience=2)
    True
    """
    return bool(patience and history) and len(history) - best_epoch(history) >= patience


class EarlyStopping:
    """Stop once ``patience`` epochs bring no better validation accuracy (a resumed run
    that had stopped so trains no further), and say so."""

    explains_stop = True  # the loop adds no line of its own

    def __init__(self, patience: int, quiet: bool = False) -> None:
        self.patience, self.quiet = patience, quiet

    def on_train_start(self, run: Any) -> bool:
        return self.on_epoch_end(run, {})

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> bool:
        history = run.state.history
        if not stops_early(history, self.patience) or run.state.epoch >= run.epochs:
            return False
        if not self.quiet:
            best = best_epoch(history)
            log.info(
                "early stop after epoch %d: val acc has not improved for %d epochs "
                "(best %.4f, epoch %d)",
                run.state.epoch,
                self.patience,
                history[best - 1]["val_acc"],
                best,
            )
        return True


class Console:
    """What a terminal shows: each epoch's progress bar (``bar``: stderr is a terminal)
    with its loss, accuracy and rate at the curve's points, and one line per epoch."""

    def __init__(self, bar: bool) -> None:
        self.show_bar = bar
        self.bar: tqdm[Any] | None = None
        self.start, self.seen = 0.0, 0

    def on_epoch_start(self, run: Any) -> None:
        if self.show_bar:
            n, epoch = len(run.train_batches), run.state.epoch
            self.bar = tqdm(
                total=n, initial=run.state.batch, desc=f"epoch {epoch + 1}", leave=False
            )
        self.start, self.seen = time.perf_counter(), run.state.seen

    def on_step(self, run: Any) -> None:
        if self.bar is not None:
            self.bar.update()

    def on_point(self, run: Any, row: dict[str, Any]) -> None:
        if self.bar is not None:
            seen = (run.state.seen - self.seen) * run.world.size  # all ranks', about
            rate = seen / max(time.perf_counter() - self.start, 1e-9)
            loss, acc = f"{row['train_loss']:.3f}", f"{row['train_acc']:.3f}"
            self.bar.set_postfix(loss=loss, acc=acc, ex_s=f"{rate:,.0f}")
            if self.bar.n >= self.bar.total:
                self.on_train_end(run, None)

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> None:
        val = f", val acc {row['val_acc']:.3f}" if "val_acc" in row else ""
        log.info(
            "epoch %d/%d: loss %.3f, train acc %.3f%s, test acc %.3f, %.0f ex/s, %.1fs",
            row["epoch"],
            run.epochs,
            row["train_loss"],
            row["train_acc"],
            val,
            row["test_acc"],
            row["examples_per_sec"],
            row["elapsed"],
        )

    def on_train_end(self, run: Any, result: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LiveFigure:
    """The book's animated curves, redrawn in the notebook at each point and epoch."""

    def __init__(self) -> None:
        from cnnlab.viz.live import LiveCurves  # matplotlib: only where a figure is shown

        self.curves = LiveCurves()

    def on_point(self, run: Any, row: dict[str, Any]) -> None:
        self.curves.update(run.state.points, run.state.history)

    on_evaluated = on_point  # an epoch's test accuracy joins the curves


def extras(keep: str, early_stop: int, quiet: bool, bar: bool) -> list[Any]:
    """The built-in callbacks a run's settings ask for, in the order they run."""
    chosen: list[Any] = [MetricsFiles()]
    if keep == "best":
        chosen.append(KeepBest())
    if not quiet:
        chosen.append(Console(bar))
        if in_notebook():
            chosen.append(LiveFigure())
    if early_stop:
        chosen.append(EarlyStopping(early_stop, quiet))
    return chosen
