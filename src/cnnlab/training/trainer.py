"""The training loop: :func:`train` builds a :class:`Run` and takes it through its epochs
(:meth:`Run.train_epoch`, whose steps are :func:`cnnlab.training.step.train_step`)."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from cnnlab.data import Batches, ImageSet
from cnnlab.data.augment import augment, augment_seed, parse_augment
from cnnlab.data.datasets import data_change, fingerprint, parse_size, subset_test_size
from cnnlab.device import autocast, bf16_missing, environment, numerics, resolve_device
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluation import EVAL_BATCH
from cnnlab.fsutil import quote
from cnnlab.logs import ensure_logging, in_notebook, log
from cnnlab.models import create_model, init_weights, parse_options
from cnnlab.models.registry import is_reference
from cnnlab.models.trial import try_on_batch
from cnnlab.models.trust import model_record, own_reference, run_factory
from cnnlab.rundir import (
    BEST,
    CHECKPOINT,
    CONFIG,
    RunLock,
    append_metric,
    create_run_dir,
    read_config,
    read_metrics,
    save_weights,
    settings,
    write_config,
    write_metrics,
    write_metrics_csv,
)
from cnnlab.training.callbacks import Callbacks
from cnnlab.training.checkpoint import (
    TrainState,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from cnnlab.training.config import TrainConfig, resumed_config
from cnnlab.training.control import Diverged, ProcessesFailed, StopOnSignal, interrupted
from cnnlab.training.cpu_path import choose_forward
from cnnlab.training.distributed import (
    World,
    all_sum,
    any_rank,
    broadcast_text,
    data_parallel,
    launch,
    setup,
    teardown,
)
from cnnlab.training.divergence import diverged, loss_limit
from cnnlab.training.metrics import accuracy, confusion_matrix
from cnnlab.training.optim import make_optimizer, make_scheduler
from cnnlab.training.outputs import best_epoch, input_shape, save_outputs
from cnnlab.training.step import Forward, Steps, graph_lengths, train_step
from cnnlab.training.tensorboard import TensorBoardLog

POINTS_PER_EPOCH = 5  # intra-epoch curve points, as the book's animator draws
ONE_PROCESS = World()


@dataclass
class TrainResult:
    """What a run produced: its directory and its per-epoch history."""

    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    examples_per_sec: float = 0.0
    device: str = "cpu"
    capture_seconds: float = 0.0  # recording the CUDA graph, not counted as training

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


@dataclass
class Parts:
    """What a run trains, on what data: built from a config by :func:`build_parts`, or
    by hand (a test, the book's Trainer) from tensors already in memory."""

    model: nn.Module  # on the training device
    optimizer: torch.optim.Optimizer
    train_set: ImageSet
    test_set: ImageSet
    classes: tuple[str, ...]
    val_set: ImageSet | None = None
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    state: TrainState = field(default_factory=TrainState)  # where a resumed run stands
    dataset: str = "custom"  # the dataset's registry name, recorded in model.json
    model_options: dict[str, Any] = field(default_factory=dict)  # how to rebuild the model
    about_data: dict[str, str] = field(default_factory=dict)  # a folder dataset's split
    data: dict[str, Any] = field(default_factory=dict)  # its fingerprint, kept in config.json


def build_parts(
    config: TrainConfig,
    device: torch.device,
    run_dir: Path | None = None,
    world: World = ONE_PROCESS,
) -> Parts:
    """The data, model, optimizer and schedule ``config`` names, on ``device``; with
    ``run_dir``, restored from its checkpoint."""
    from cnnlab.data.folder import load_splits  # PIL: only when a run loads its data

    train_set, test_set, classes, about = load_splits(
        config.dataset, config.data_dir, config.channels, parse_size(config.image_size)
    )
    if config.subset:  # a quick try of a big network: the same examples every run
        train_set, test_set = (
            train_set.subset(config.subset),
            test_set.subset(subset_test_size(config.subset)),
        )
    data = fingerprint(train_set, test_set, classes)
    if run_dir is not None:  # resumed: on the data it trained on, or not at all
        change = data_change(read_config(run_dir).get("data"), data)
        if change:
            raise CheckpointError(
                f"{config.dataset}: the data changed since {run_dir} started ({change}); a "
                "resumed run trains on the data it began with: put that data back, or start "
                "a new run"
            )
    shape = input_shape(train_set)
    val_set = None
    if config.val_size:
        train_set, val_set = train_set.split_validation(config.val_size)
    options = {
        **parse_options(config.model, config.model_options),
        "num_classes": len(classes),
        "in_channels": shape[0],
        "image_size": shape[1:],
        "backend": config.backend,
    }
    model = build_model(config, options, shape, device)
    optimizer = make_optimizer(
        model, config.optimizer, config.lr, config.weight_decay, config.momentum
    )
    examples = len(train_set.labels)
    per_epoch = -(-examples // config.batch_size)  # optimizer steps
    scheduler = make_scheduler(optimizer, config.schedule, config.epochs * per_epoch)
    state = TrainState()
    if run_dir is not None:
        state = load_checkpoint(run_dir, model, optimizer, scheduler)
        if state.batch > per_epoch or state.seen > examples:
            raise CheckpointError(
                f"{run_dir / CHECKPOINT}: batch {state.batch} and {state.seen} examples seen "
                f"do not fit an epoch of {per_epoch} batches of its {examples} examples"
            )
        if not world.is_main:  # rank 0 carries the epoch's partial sums for everyone
            state.loss_sum.zero_()
            state.correct.zero_()
            state.seen = 0
    return Parts(
        model,
        optimizer,
        train_set,
        test_set,
        classes,
        val_set,
        scheduler,
        state,
        config.dataset,
        options,
        about,
        data,
    )


def build_model(
    config: TrainConfig, options: dict[str, Any], shape: tuple[int, ...], device: torch.device
) -> nn.Module:
    """``config``'s model built with ``options`` for inputs of ``shape``, initialised from
    the config's seed, on ``device``."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, **options)
    # One blank batch before anything is written: a model that does not fit the data is
    # one line naming the layer, and lazy layers take their shapes.
    try_on_batch(model, shape, options["num_classes"], config.model)
    init_weights(model, config.init)
    if device.type == "cpu":
        # Measured on 2 AVX2 cores: oneDNN runs LeNet's few-channel convolutions ~1.35x
        # faster in channels-last (see the README's speed section).
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.to(device)


FEW_STEPS = 10  # optimizer steps an epoch should have, at least, to learn steadily


def few_steps(examples: int, batch_size: int) -> str | None:
    """A note for an epoch of fewer than :data:`FEW_STEPS` steps, naming a batch size that
    gives about that many; None otherwise.

    >>> few_steps(72, 256)[-38:]
    '--batch-size 7 gives 11 steps an epoch'
    >>> few_steps(60000, 256) is None
    True
    """
    steps = -(-examples // batch_size)
    if steps >= FEW_STEPS or examples < 2:
        return None
    better = max(1, examples // FEW_STEPS)
    return (
        f"each epoch is {steps} step{'s' if steps > 1 else ''} ({examples} training images, "
        f"--batch-size {batch_size}): the loss swings from step to step and little is learned "
        f"per epoch; --batch-size {better} gives {-(-examples // better)} steps an epoch"
    )


def stops_early(history: list[dict[str, Any]], patience: int) -> bool:
    """True when the last ``patience`` epochs brought no better validation accuracy.

    >>> stops_early([{"val_acc": a} for a in (0.5, 0.7, 0.6, 0.7)], patience=2)
    True
    """
    return bool(patience and history) and len(history) - best_epoch(history) >= patience


def epoch_row(
    state: TrainState,
    loss: float,
    correct: float,
    seen: int,
    accuracies: dict[str, float],
    wall_start: float,
) -> dict[str, Any]:
    """The metrics row of the epoch ``state`` has just trained, from its sums over all
    ranks (loss, correct, seen) and the accuracies evaluated after it."""
    seconds = state.train_seconds - sum(r.get("train_seconds", 0.0) for r in state.history)
    return {
        "type": "epoch",
        "epoch": state.epoch + 1,
        "train_loss": loss / seen,
        "train_acc": correct / seen,
        **accuracies,
        "examples_per_sec": seen / max(seconds, 1e-9),
        "train_seconds": seconds,
        "elapsed": time.perf_counter() - wall_start,
    }


def effective_precision(precision: str, device: torch.device, is_main: bool) -> str:
    """What a run computes in: ``precision``, but fp32 (said once) where bf16 is missing."""
    if precision == "bf16" and (missing := bf16_missing(device)) is not None:
        if is_main:
            log.warning("--precision bf16: %s, so this run trains in fp32", missing)
        return "fp32"
    return precision


def capture_graphs(run: Run) -> None:
    """Capture the run's CUDA graphs where it has lengths to graph (once; timed apart from
    training, and said)."""
    if run.graph_lengths and not run.steps.graphs:
        run.model.train()  # the graphs record the training mode's kernels
        sums = (run.state.loss_sum, run.state.correct)  # updated in place by the graph
        run.steps.capture(
            run.graph_lengths, run.model, run.fast_model, run.optimizer, sums, run.config.compile
        )
        if not run.config.quiet:
            log.info(
                "captured the training step as a CUDA graph in %.2f s", run.steps.capture_seconds
            )


def live_curves() -> Any:
    """The notebook's live figure (matplotlib is loaded only where one is shown)."""
    from cnnlab.viz.live import LiveCurves

    return LiveCurves()


class Run:
    """One training run: the loop's verbs, over the parts it is handed."""

    def __init__(
        self, config: TrainConfig, parts: Parts, run_dir: Path, world: World = ONE_PROCESS
    ) -> None:
        self.config, self.parts, self.run_dir, self.world = config, parts, run_dir, world
        self.device = next(parts.model.parameters()).device  # build_parts put it there
        self.precision = effective_precision(config.precision, self.device, world.is_main)
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        self.classes, self.state, device = parts.classes, parts.state, self.device
        self.state.sums_to(device)
        self.train_batches = Batches(parts.train_set, config.batch_size, device, True, config.seed)
        self.test_batches = Batches(parts.test_set, EVAL_BATCH, device)
        val_set = parts.val_set
        self.val_batches = Batches(val_set, EVAL_BATCH, device) if val_set else None
        self.fast_model, self.cpu_path = choose_forward(  # on a CPU maybe its blocks fused
            config, self.model, self.train_batches, world, run_dir, self.precision
        )
        self.net = data_parallel(self.fast_model, world, self.device)  # DDP under torchrun
        self.augmentations = parse_augment(config.augment)
        self.live = live_curves() if world.is_main and not config.quiet and in_notebook() else None
        self.callbacks = Callbacks()  # train() hands the run its own
        self.steps = Steps(self.batch_step)
        self.graph_lengths = graph_lengths(
            config, self.device, world.size, self.train_batches.num_examples
        )

    def batch_step(
        self, index: torch.Tensor, count: int, forward: Forward | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather (and augment) the examples ``index`` of a global batch of ``count``, take
        :func:`train_step` on them, and add to the epoch's sums."""
        x, y = self.train_batches.gather(index)
        if self.augmentations:  # a function of (seed, step, rank): resumed runs draw the same
            seed = augment_seed(self.config.seed, self.state.step, self.world.rank)
            x = augment(x, self.augmentations, torch.Generator(self.device).manual_seed(seed))
        scale = self.world.size / count  # the global batch's mean; DDP averages over the world
        net, smoothing = forward or self.net, self.config.label_smoothing
        loss_sum, correct = train_step(net, self.optimizer, x, y, scale, self.precision, smoothing)
        self.state.loss_sum += loss_sum
        self.state.correct += correct
        return loss_sum, correct

    def global_sums(self) -> tuple[float, float, int]:
        """(loss sum, correct, seen) of the epoch so far, over all ranks."""
        seen = torch.tensor(self.state.seen, device=self.device)
        loss, correct, total = all_sum(self.world, self.state.loss_sum, self.state.correct, seen)
        return loss.item(), correct.item(), int(total.item())

    def train_epoch(self, stop: StopOnSignal, progress: bool) -> None:
        """Train the rest of the current epoch; metrics stay on the device between points."""
        self.model.train()
        state, world = self.state, self.world
        size, n = self.config.batch_size, len(self.train_batches)
        every = max(1, n // POINTS_PER_EPOCH)  # the book divides by zero below 5
        check_every = 1 if self.device.type == "cpu" else every  # reading a CPU value is free
        start, done = time.perf_counter(), 0  # done: examples of all ranks, for the bar's rate
        batches = self.train_batches.indices(state.epoch, state.batch, world.rank, world.size)
        shown = {"desc": f"epoch {state.epoch + 1}", "disable": not progress, "leave": False}
        with tqdm(total=n, initial=state.batch, **shown) as bar:
            for i, index in enumerate(batches, start=state.batch):
                count = min(size, self.train_batches.num_examples - i * size)
                batch_loss = self.steps(index, count)
                if self.scheduler is not None:
                    self.scheduler.step()
                done, state.seen = done + count, state.seen + len(index)
                state.batch, state.step = i + 1, state.step + 1
                bar.update()
                if (i + 1) % check_every == 0 and not torch.isfinite(batch_loss):
                    raise self.diverged(i, "is not a finite number")
                point = (i + 1) % every == 0 or i == n - 1
                if point:
                    loss, correct, seen = self.global_sums()
                    if loss / seen > loss_limit(len(self.classes)):
                        raise self.diverged(i, f"averages {loss / seen:.1f}")
                    loss, acc = loss / seen, correct / seen
                    self.add_point(state.epoch + (i + 1) / n, loss, acc)
                    rate = done / (time.perf_counter() - start)
                    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", ex_s=f"{rate:,.0f}")
                # Under torchrun the ranks agree on a stop at the curve's points only: an
                # all-reduce and a host read per batch would cost every step.
                asks = point or not world.distributed
                if asks and any_rank(world, stop.signum is not None, self.device):
                    state.train_seconds += time.perf_counter() - start
                    self.interrupt(stop.signum or signal.SIGTERM)
                every_n = self.config.checkpoint_every
                if every_n and state.step % every_n == 0 and i < n - 1:
                    self.save_checkpoint(extra_seconds=time.perf_counter() - start)
        state.train_seconds += time.perf_counter() - start

    def evaluate(self, batches: Batches) -> float:
        """Accuracy on ``batches`` (every rank computes the same number)."""
        classes, tta = len(self.classes), self.config.tta
        with autocast(self.device, self.precision):
            return accuracy(confusion_matrix(self.fast_model, batches, classes, tta))

    def finish_epoch(self, wall_start: float) -> dict[str, Any]:
        """Evaluate, record the epoch's row (metrics files, the best weights), checkpoint."""
        accuracies = {"test_acc": self.evaluate(self.test_batches)}
        if self.val_batches:
            accuracies["val_acc"] = self.evaluate(self.val_batches)
        row = epoch_row(self.state, *self.global_sums(), accuracies, wall_start)
        self.state.history.append(row)
        if self.world.is_main:
            append_metric(self.run_dir, row)
            write_metrics_csv(self.run_dir, self.state.history)
            if self.config.keep == "best" and best_epoch(self.state.history) == row["epoch"]:
                save_weights(self.run_dir / BEST, self.model)
        self.state.epoch, self.state.batch, self.state.seen = self.state.epoch + 1, 0, 0
        self.state.loss_sum.zero_()
        self.state.correct.zero_()
        self.save_checkpoint()
        return row

    def add_point(self, x: float, loss: float, acc: float) -> None:
        point = {"x": x, "train_loss": loss, "train_acc": acc}
        self.state.points.append(point)
        if self.world.is_main:
            append_metric(self.run_dir, {"type": "point", **point})
            self.callbacks.call("on_point", self, point)
        if self.live is not None:
            self.live.update(self.state.points, self.state.history)

    def save_checkpoint(self, extra_seconds: float = 0.0) -> None:
        """Rank 0 writes the state (with the epoch's sums over all ranks); never a NaN one."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise self.diverged(self.state.batch - 1)
        state = dataclasses.replace(self.state)  # a copy, with the sums over all ranks
        state.train_seconds += extra_seconds
        seen = torch.tensor(state.seen, device=self.device)
        sums = all_sum(self.world, state.loss_sum, state.correct, seen)
        state.loss_sum, state.correct, seen = sums
        if self.world.is_main:
            state.seen, config = int(seen.item()), self.config.to_dict()
            save_checkpoint(self.run_dir, self.model, self.optimizer, state, config, self.scheduler)

    def diverged(self, batch_index: int, what: str = "is not a finite number") -> Diverged:
        where = (self.state.epoch + 1, batch_index + 1)
        return diverged(what, where, len(self.classes), self.config, self.run_dir)

    def interrupt(self, signum: int) -> None:
        """Checkpoint, then stop with the signal's exit code and how to resume."""
        self.save_checkpoint()
        raise interrupted(signum, self.state.epoch, self.state.batch, self.run_dir)


def prepare_run_dir(
    config: TrainConfig, world: World, asked: set[str]
) -> tuple[TrainConfig, Path, bool, RunLock | None]:
    """The run directory, the config to use, whether to resume from a checkpoint, and
    (on rank 0) the lock that keeps every other process out of the directory."""
    if config.resume:
        if config.out_dir is not None and Path(config.out_dir) != Path(config.resume):
            raise ConfigError(
                f"--out-dir {config.out_dir} with --resume {config.resume}: a resumed run "
                "stays in its own directory; leave --out-dir out"
            )
        run_dir = Path(config.resume)
        # A run stopped before its first checkpoint (killed in its first epoch, a full disk)
        # starts again from step 0 with the config it saved: the same run, from the start.
        from_start = not (run_dir / CHECKPOINT).exists() and (run_dir / CONFIG).is_file()
        if from_start:
            saved = settings(read_config(run_dir))
            epochs_done, source = 0, run_dir / CONFIG
        else:
            (saved, epochs_done), source = checkpoint_config(run_dir), run_dir / CHECKPOINT
        try:
            saved_config = TrainConfig.from_dict(saved)
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{source}: its config is not valid: {e}") from e
        config = resumed_config(saved_config, config, asked, epochs_done)
        config = dataclasses.replace(config, model=resumed_model(config, run_dir))
        # where the run is now (a moved directory resumes): config.json records what is so
        config = dataclasses.replace(config, out_dir=str(run_dir))
        if from_start and world.is_main and not config.quiet:
            log.info(
                "%s stopped before its first checkpoint: training it again from the "
                "start, with its saved config",
                run_dir,
            )
        return config, run_dir, not from_start, RunLock(run_dir) if world.is_main else None
    out_dir = Path(config.out_dir) if config.out_dir else None
    if world.restarted and out_dir is not None and (out_dir / CHECKPOINT).exists():
        # torchrun restarted us: pick up where the run stopped
        return config, out_dir, True, RunLock(out_dir) if world.is_main else None
    lock = None
    if world.is_main:
        out_dir, lock = create_run_dir(out_dir, config.model)
    return config, Path(broadcast_text(world, str(out_dir))), False, lock


def resumed_model(config: TrainConfig, run_dir: Path) -> str:
    """The model a resumed run trains: a registered name, or its own model file checked
    as every command checks it (unchanged since config.json recorded it, and trained with
    here or trusted), by its absolute path."""
    if not is_reference(config.model):
        return config.model
    record = read_config(run_dir).get("model_file") if (run_dir / CONFIG).is_file() else None
    run_factory(config.model, record, run_dir / CONFIG, config.trust_model_file)
    return f"{record['path']}:{config.model.rpartition(':')[2]}"  # type: ignore[index]


def train(
    config: TrainConfig, asked: Collection[str] | None = None, callbacks: Iterable[Any] = ()
) -> TrainResult:
    """Run ``config`` end to end: data, model, epochs, metrics, figure, weights.

    Writes into the run directory: ``config.json``, ``metrics.jsonl``, ``curves.png``,
    ``checkpoint.safetensors`` (every epoch, and every ``checkpoint_every`` steps),
    ``model.safetensors`` and ``model.json``. ``config.resume`` continues a stopped run;
    of its other fields, those in ``asked`` (default: those off their defaults) are
    applied where a resumed run may change them, and refused where they would change what
    the run trains (see :func:`~cnnlab.training.config.resumed_config`).

    ``callbacks``: objects with hooks into the run (see :mod:`cnnlab.training.callbacks`).
    ``config.nproc`` > 1 starts that many processes under torchrun, as ``cnnlab train
    --nproc`` does, and returns what they wrote.
    """
    ensure_logging()
    hooks = Callbacks(callbacks)
    if config.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if hooks.items:
            raise ConfigError(
                "callbacks cannot reach the processes nproc starts: call train() with "
                "callbacks under torchrun yourself (they run on rank 0)"
            )
        return train_in_processes(config)
    if is_reference(config.model) and not config.resume:  # the user's own code: trusted
        config = dataclasses.replace(config, model=own_reference(config.model))
    if config.data_dir:  # recorded as a whole path: eval, report, export find it from anywhere
        config = dataclasses.replace(config, data_dir=os.path.abspath(config.data_dir))
    device = resolve_device(config.device)
    world = setup(device.type)
    try:
        if asked is None:
            asked = {
                f.name for f in dataclasses.fields(config) if getattr(config, f.name) != f.default
            }
        with numerics(device):
            return _train(config, world, set(asked), hooks)
    finally:
        teardown(world)


def train_in_processes(config: TrainConfig) -> TrainResult:
    """``config`` trained by ``config.nproc`` processes under torchrun (each calls
    :func:`train` with the config's flags); the result read back from the run directory.
    The directory is fixed here, so workers that torchrun restarts find it."""
    if not config.resume and not config.out_dir:
        run_dir, lock = create_run_dir(None, config.model)
        lock.release()  # rank 0 takes it
        config = dataclasses.replace(config, out_dir=str(run_dir))
    run_dir = Path(config.resume or config.out_dir or "")
    flags = config.to_flags(("nproc", "max_restarts"))
    code, failure = launch(flags, config.nproc, config.max_restarts, run_dir)
    if code != 0:
        raise ProcessesFailed(failure, code)
    _, history = read_metrics(run_dir)
    seconds = sum(r["train_seconds"] for r in history)
    examples = sum(r["train_seconds"] * r["examples_per_sec"] for r in history)
    device = read_config(run_dir)["environment"]["device"]
    return TrainResult(run_dir, history, examples / seconds if seconds else 0.0, device)


def _train(config: TrainConfig, world: World, asked: set[str], hooks: Callbacks) -> TrainResult:
    config, run_dir, resume, lock = prepare_run_dir(config, world, asked)
    failed = True
    try:
        result = _train_in(run_dir, config, world, resume, hooks)
        failed = False
        return result
    finally:
        if lock is not None:
            lock.release(failed)


def _train_in(
    run_dir: Path, config: TrainConfig, world: World, resume: bool, hooks: Callbacks
) -> TrainResult:
    device = resolve_device(config.device, world.local_rank)
    parts = build_parts(config, device, run_dir if resume else None, world)
    run = Run(config, parts, run_dir, world)
    if world.is_main:
        start_files(run, hooks)
    talk = world.is_main and not config.quiet
    if resume and talk:
        log.info("resuming %s at epoch %d, step %d", run_dir, run.state.epoch + 1, run.state.batch)
    if talk and (note := few_steps(len(parts.train_set.labels), config.batch_size)):
        log.warning("%s", note)
    asked_to_stop = train_epochs(run, progress=talk and sys.stderr.isatty())
    if talk:
        say_why_stopped(run, asked_to_stop)
    if world.is_main:
        save_outputs(run_dir, run.model, config, run.parts, run.state)
    history = run.state.history
    examples = run.train_batches.num_examples * len(history)
    result = TrainResult(
        run_dir,
        history,
        examples / run.state.train_seconds,
        str(run.device),
        run.steps.capture_seconds,
    )
    run.callbacks.call("on_train_end", run, result)
    if world.is_main:
        final = result.final
        log.info(
            "loss %.3f, train acc %.3f, test acc %.3f",
            final["train_loss"],
            final["train_acc"],
            final["test_acc"],
        )
        log.info("%.1f examples/sec on %s", result.examples_per_sec, run.device)
        log.info("run saved to %s", run_dir)
    return result


def start_files(run: Run, hooks: Callbacks) -> None:
    """Rank 0: the run's callbacks (TensorBoard first), config.json, and metrics.jsonl
    restarted from what the checkpoint knows (no row counted twice)."""
    board = [TensorBoardLog(run.run_dir)] if run.config.tensorboard else []
    run.callbacks = Callbacks([*board, *hooks.items])
    env = {
        **environment(run.device, run.world.size),
        "precision": run.precision,
        **({"cpu_path": run.cpu_path} if run.cpu_path else {}),
    }
    records = {
        **model_record(run.config.model),
        **({"data": run.parts.data} if run.parts.data else {}),
    }
    write_config(run.run_dir, run.config.to_dict(), env, records)
    rows = sorted(
        [{"type": "point", **p} for p in run.state.points] + run.state.history,
        key=lambda r: (r["x"], 0) if r["type"] == "point" else (r["epoch"], 1),
    )
    write_metrics(run.run_dir, rows)


def train_epochs(run: Run, progress: bool) -> bool:
    """The epochs left, until early stopping; True if a callback asked to stop."""
    config, world, talk = run.config, run.world, run.world.is_main and not run.config.quiet
    capture_graphs(run)
    wall_start, asked_to_stop = time.perf_counter(), False
    with StopOnSignal() as stop:
        while (
            run.state.epoch < config.epochs
            and not asked_to_stop
            and not stops_early(run.state.history, config.early_stop)
        ):
            run.train_epoch(stop, progress)
            row = run.finish_epoch(wall_start)
            wants_stop = world.is_main and run.callbacks.stop_after_epoch(run, row)
            asked_to_stop = any_rank(world, wants_stop, run.device)
            if any_rank(world, stop.signum is not None, run.device):  # during evaluation
                run.interrupt(stop.signum or signal.SIGTERM)
            if talk:
                val = f", val acc {row['val_acc']:.3f}" if "val_acc" in row else ""
                log.info(
                    "epoch %d/%d: loss %.3f, train acc %.3f%s, test acc %.3f, %.0f ex/s, %.1fs",
                    row["epoch"],
                    config.epochs,
                    row["train_loss"],
                    row["train_acc"],
                    val,
                    row["test_acc"],
                    row["examples_per_sec"],
                    row["elapsed"],
                )
    return asked_to_stop


def say_why_stopped(run: Run, asked_to_stop: bool) -> None:
    """A line for a run that stopped before its last epoch: a callback, or early stopping."""
    epoch, epochs, history = run.state.epoch, run.config.epochs, run.state.history
    if asked_to_stop and epoch < epochs:
        log.info(
            "stopped after epoch %d: a callback asked to (cnnlab train --resume %s "
            "--epochs %d goes on)",
            epoch,
            quote(run.run_dir),
            epochs,
        )
    elif epoch < epochs:
        best = best_epoch(history)
        log.info(
            "early stop after epoch %d: val acc has not improved for %d epochs "
            "(best %.4f, epoch %d)",
            epoch,
            run.config.early_stop,
            history[best - 1]["val_acc"],
            best,
        )
