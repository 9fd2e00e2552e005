"""The training loop. :func:`train` sets a run up (its directory, its :class:`Parts`, a
:class:`Run` with its callbacks) and :func:`fit` takes it through its epochs, each
(:meth:`Run.train_epoch`) a :class:`~cnnlab.training.step.Step` per batch. From the
command line to ``optimizer.step()``: ``cli.main -> cmd_train -> train -> fit ->
Run.train_epoch -> Step.__call__``."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from cnnlab import environ
from cnnlab.device import environment, numerics, resolve_device
from cnnlab.errors import ConfigError
from cnnlab.fsutil import quote
from cnnlab.logs import ensure_logging, log
from cnnlab.models.registry import is_reference
from cnnlab.models.trust import model_record, own_reference
from cnnlab.rundir import write_config
from cnnlab.training.callbacks import Callbacks
from cnnlab.training.config import TrainConfig
from cnnlab.training.control import StopOnSignal
from cnnlab.training.distributed import World, any_rank, setup, teardown
from cnnlab.training.extras import extras
from cnnlab.training.launch import prepare_run_dir, train_in_processes
from cnnlab.training.outputs import TrainResult, save_outputs
from cnnlab.training.parts import build_parts, few_steps
from cnnlab.training.run import Run
from cnnlab.training.step import capture
from cnnlab.training.tensorboard import TensorBoardLog


def fit(run: Run) -> None:
    """Take ``run`` through its epochs left, until a callback (early stopping among them)
    asks it to stop; a signal checkpoints it and stops it with the signal's exit code."""
    world, hooks = run.world, run.callbacks
    capture_graphs(run)
    wall_start = time.perf_counter()
    asking = hooks.asking_to_stop("on_train_start", run)
    with StopOnSignal() as stop:
        while run.state.epoch < run.epochs and not any_rank(world, bool(asking), run.device):
            run.train_epoch(stop)
            row = run.finish_epoch(wall_start)
            asking = hooks.asking_to_stop("on_epoch_end", run, row)
            if any_rank(world, stop.signum is not None, run.device):  # a signal during evaluation
                run.interrupt(stop.signum or signal.SIGTERM)
    unexplained = not all(getattr(callback, "explains_stop", False) for callback in asking)
    if asking and unexplained and run.state.epoch < run.epochs and not run.config.quiet:
        log.info(
            "stopped after epoch %d: a callback asked to (cnnlab train --resume %s "
            "--epochs %d goes on)",
            run.state.epoch,
            quote(run.run_dir),
            run.epochs,
        )


def train(
    config: TrainConfig, asked: Collection[str] | None = None, callbacks: Iterable[Any] = ()
) -> TrainResult:
    """Run ``config`` end to end: data, model, epochs, metrics, figure, weights.

    Writes into the run directory: ``config.json``, ``metrics.jsonl``, ``curves.png``,
    ``checkpoint.safetensors`` (every epoch, and every ``checkpoint_every`` steps),
    ``model.safetensors`` and ``model.json``. ``config.resume`` continues a stopped run;
    of its other fields, those in ``asked`` (default: those off their defaults) are
    applied where a resumed run may change them, and refused where they would change what
    the run trains (see :func:`~cnnlab.training.launch.resumed_config`).

    ``callbacks``: objects with hooks into the run (see :mod:`cnnlab.training.callbacks`).
    ``config.nproc`` > 1 starts that many processes under torchrun, as ``cnnlab train
    --nproc`` does, and returns what they wrote.
    """
    ensure_logging()
    hooks = Callbacks(callbacks).items  # checked before anything starts
    if config.nproc > 1 and not environ.under_torchrun():
        if hooks:
            raise ConfigError(
                "callbacks cannot reach the processes nproc starts: call train() with "
                "callbacks under torchrun yourself (they run on rank 0)"
            )
        return train_in_processes(config)
    if is_reference(config.model) and not config.resume:  # the user's own code: trusted
        config = dataclasses.replace(config, model=own_reference(config.model))
    if config.data_dir:  # recorded as a whole path: eval, report, export find it from anywhere
        config = dataclasses.replace(config, data_dir=os.path.abspath(config.data_dir))
    if asked is None:
        asked = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != f.default}
    device = resolve_device(config.device)
    world, lock = setup(device.type), None
    try:
        with numerics(device):
            config, run_dir, resume, lock = prepare_run_dir(config, world, set(asked))
            run = start(config, run_dir, world, resume, hooks)
            fit(run)
            result = finish(run)
    except BaseException:
        if lock is not None:
            lock.release(failed=True)
        raise
    finally:
        teardown(world)
    if lock is not None:
        lock.release()
    return result


def start(config: TrainConfig, run_dir: Path, world: World, resume: bool, hooks: list[Any]) -> Run:
    """The run ``config`` describes in ``run_dir``, built (or restored from its checkpoint
    with ``resume``), with its callbacks; rank 0 writes its config.json."""
    device = resolve_device(config.device, world.local_rank)
    parts = build_parts(config, device, run_dir if resume else None, world)
    talk = world.is_main and not config.quiet
    callbacks = []
    if world.is_main:
        bar = talk and sys.stderr.isatty()
        board = [TensorBoardLog(run_dir)] if config.tensorboard else []
        callbacks = [*extras(config.keep, config.early_stop, config.quiet, bar), *board, *hooks]
    run = Run(config, parts, run_dir, world, callbacks)
    if world.is_main:
        env = {
            **environment(run.device, world.size),
            "precision": run.precision,
            "threads_follow_free_cores": run.cores.active,
            **({"cpu_path": run.cpu_path} if run.cpu_path else {}),
        }
        records = {**model_record(config.model), **({"data": parts.data} if parts.data else {})}
        write_config(run_dir, config.to_dict(), env, records)
    if resume and talk:
        log.info("resuming %s at epoch %d, step %d", run_dir, run.state.epoch + 1, run.state.batch)
    if talk and (note := few_steps(len(parts.train_set.labels), config.batch_size)):
        log.warning("%s", note)
    return run


def finish(run: Run) -> TrainResult:
    """Rank 0 saves what the run leaves (the model, model.json, curves.png) and says how
    it ended; the result, as every rank knows it."""
    config, history = run.config, run.state.history
    if run.world.is_main:
        reference = config.model
        save_outputs(
            run.run_dir,
            run.model,
            run.parts,
            run.state,
            reference,
            config.keep,
            config.tta,
            config.subset,
        )
    examples = run.train_batches.num_examples * len(history)
    result = TrainResult(
        run.run_dir,
        history,
        examples / run.state.train_seconds,
        str(run.device),
        run.capture_seconds,
    )
    run.callbacks.call("on_train_end", run, result)
    if run.world.is_main:
        final = result.final
        log.info(
            "loss %.3f, train acc %.3f, test acc %.3f",
            final["train_loss"],
            final["train_acc"],
            final["test_acc"],
        )
        log.info("%.1f examples/sec on %s", result.examples_per_sec, run.device)
        log.info("run saved to %s", run.run_dir)
    return result


def capture_graphs(run: Run) -> None:
    """Record the run's step as CUDA graphs where it has lengths to graph (once; timed
    apart from training, and said)."""
    if run.graph_lengths and not run.graphs:
        run.model.train()  # the graphs record the training mode's kernels
        run.graphs, run.capture_seconds = capture(
            run.step, run.graph_lengths, run.model, run.forward_net, run.config.compile
        )
        if not run.config.quiet:
            log.info("captured the training step as a CUDA graph in %.2f s", run.capture_seconds)
