"""The training loop, split into verbs: train_step, train_epoch, evaluate, train."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnlab.accel.choice import faster
from cnnlab.accel.cpu import build, fuse_blocks
from cnnlab.accel.step import GraphedSteps, Step, graphable
from cnnlab.data import Batches, ImageSet
from cnnlab.data.augment import augment, parse_augment
from cnnlab.data.datasets import is_folder, parse_size
from cnnlab.device import autocast, bf16_missing, environment, numerics, resolve_device
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluation import EVAL_BATCH
from cnnlab.logs import ensure_logging, in_notebook, log
from cnnlab.models import create_model, init_weights, parse_options, pool_before_activation
from cnnlab.models.registry import file_digest, is_reference, reference_file
from cnnlab.rundir import (
    BEST,
    CHECKPOINT,
    CONFIG,
    CURVES,
    RunLock,
    append_metric,
    create_run_dir,
    load_weights,
    read_config,
    read_metrics,
    save_model,
    save_weights,
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
from cnnlab.training.control import Diverged, Interrupted, ProcessesFailed, StopOnSignal
from cnnlab.training.distributed import (
    World,
    all_sum,
    any_rank,
    broadcast_text,
    launch,
    setup,
    teardown,
)
from cnnlab.training.metrics import accuracy, confusion_matrix
from cnnlab.training.optim import make_optimizer, make_scheduler
from cnnlab.training.tensorboard import TensorBoardLog

POINTS_PER_EPOCH = 5  # intra-epoch curve points, as the book's animator draws
DIVERGED_FACTOR = 10  # stop when the average loss exceeds this many times ln(classes)
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


def build_parts(config: TrainConfig, device: torch.device, run_dir: Path | None = None,
                world: World = ONE_PROCESS) -> Parts:  # fmt: skip
    """The data, model, optimizer and schedule ``config`` names, on ``device``; with
    ``run_dir``, restored from its checkpoint."""
    from cnnlab.data.folder import load_splits  # PIL: only when a run loads its data

    train_set, test_set, classes, about = load_splits(
        config.dataset, config.data_dir, config.channels, parse_size(config.image_size)
    )
    shape = input_shape(train_set)
    val_set = None
    if config.val_size:
        train_set, val_set = train_set.split_validation(config.val_size)
    torch.manual_seed(config.seed)
    options = {
        **parse_options(config.model, config.model_options),
        "num_classes": len(classes), "in_channels": shape[0], "image_size": shape[1:],
        "backend": config.backend,
    }  # fmt: skip
    try:
        model = create_model(config.model, **options)
    except (RuntimeError, MemoryError) as e:  # e.g. channels=100000,100000
        if isinstance(e, RuntimeError) and "alloc" not in str(e):
            raise
        raise ConfigError(
            f"model {config.model} with options {config.model_options!r} does not fit in "
            "memory; choose smaller channel and dense widths"
        ) from None
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        with torch.no_grad():  # shape lazy layers (a model of one's own may have them)
            model.eval()(torch.zeros(2, *shape))
        model.train()
    init_weights(model, config.init)
    if device.type == "cpu":
        # Measured on 2 AVX2 cores: oneDNN runs LeNet's few-channel convolutions ~1.35x
        # faster in channels-last (see the README's speed section).
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.to(device)
    optimizer = make_optimizer(model, config.optimizer, config.lr, config.weight_decay,
                               config.momentum)  # fmt: skip
    steps = config.epochs * -(-len(train_set.labels) // config.batch_size)
    scheduler = make_scheduler(optimizer, config.schedule, steps)
    state = TrainState()
    if run_dir is not None:
        state = load_checkpoint(run_dir, model, optimizer, scheduler)
        if not world.is_main:  # rank 0 carries the epoch's partial sums for everyone
            state.loss_sum.zero_()
            state.correct.zero_()
            state.seen = 0
    return Parts(model, optimizer, train_set, test_set, classes, val_set, scheduler, state,
                 config.dataset, options, about)  # fmt: skip


def preprocessing(parts: Parts) -> dict[str, Any]:
    """How the model's input is made from a picture (model.json's ``preprocessing``)."""
    channels, height, width = input_shape(parts.train_set)
    own = is_folder(parts.dataset)
    return {
        "input_shape": [channels, height, width], "grayscale": channels == 1,
        "scale": "pixel / 255",
        "background": "as in your images" if own else "dark (0), as in the dataset",
        **({"resize": "Lanczos, to the input's size"} if own else {}),
    }  # fmt: skip


def input_shape(split: ImageSet) -> tuple[int, int, int]:
    """(channels, height, width) of the images of ``split``."""
    shape = split.images.shape
    return (1, shape[1], shape[2]) if len(shape) == 3 else (shape[1], shape[2], shape[3])


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch (1-based) of the highest validation accuracy (the first, on a tie)."""
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return best + 1


def stops_early(history: list[dict[str, Any]], patience: int) -> bool:
    """True when the last ``patience`` epochs brought no better validation accuracy.

    >>> stops_early([{"val_acc": a} for a in (0.5, 0.7, 0.6, 0.7)], patience=2)
    True
    """
    return bool(patience and history) and len(history) - best_epoch(history) >= patience


def model_source(model: str) -> dict[str, Any]:
    """For a model of one's own (``PATH.py:FUNC``), where its code is and the SHA-256 of
    that file, so that the run rebuilds it from anywhere and notices an edit."""
    if not is_reference(model):
        return {}
    path = reference_file(model)
    return {"model_file": {"path": str(path), "sha256": file_digest(path)}}


def live_curves() -> Any:
    """The notebook's live figure (matplotlib is loaded only where one is shown)."""
    from cnnlab.viz.live import LiveCurves

    return LiveCurves()


class Run:
    """One training run: the loop's verbs, over the parts it is handed."""

    def __init__(
        self, config: TrainConfig, parts: Parts, run_dir: Path, world: World = ONE_PROCESS,
        device: torch.device | None = None,
    ) -> None:  # fmt: skip
        self.config, self.parts, self.run_dir, self.world = config, parts, run_dir, world
        self.device = device or next(parts.model.parameters()).device
        self.precision = config.precision  # what the run computes in: fp32 where bf16 is missing
        if config.precision == "bf16" and (missing := bf16_missing(self.device)) is not None:
            if world.is_main:
                log.warning("--precision bf16: %s, so this run trains in fp32", missing)
            self.precision = "fp32"
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        self.classes = parts.classes
        self.state = parts.state
        self.state.loss_sum = self.state.loss_sum.to(self.device)
        self.state.correct = self.state.correct.to(self.device)
        train_set, test_set, val_set = parts.train_set, parts.test_set, parts.val_set
        self.train_batches = Batches(train_set, config.batch_size, self.device, True, config.seed)
        self.test_batches = Batches(test_set, EVAL_BATCH, self.device)
        self.val_batches = Batches(val_set, EVAL_BATCH, self.device) if val_set else None
        self.cpu_path: dict[str, Any] = {}  # which CPU path runs, and why (config.json)
        self.fast_model = self.choose_forward()
        self.net: nn.Module = self.fast_model
        if world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.fast_model, device_ids=ids)
        self.augmentations = parse_augment(config.augment)
        self.live = live_curves() if world.is_main and not config.quiet and in_notebook() else None
        self.callbacks = Callbacks()  # train() hands the run its own
        # The step, chosen once: replayed from CUDA graphs where that computes the same
        # step (see accel.step.graphable), else eager.
        n, size = self.train_batches.num_examples, config.batch_size
        self.step = Step(self.eager_step)
        if config.fast is not False and graphable(
            self.device, world.size, n, size, config.optimizer, config.schedule,
            bool(self.augmentations),
        ):
            self.step = GraphedSteps(
                self.eager_step, self.graph_step, self.model, self.fast_model, self.optimizer,
                (self.state.loss_sum, self.state.correct), sorted({size, n % size} - {0}),
                config.compile,
            )  # fmt: skip

    def choose_forward(self) -> nn.Module:
        """What runs the model's forward (max pooling before the activation): its layers,
        or on a CPU its blocks fused (accel.cpu) where --fast forces them or, by default,
        where a few timed steps find them faster than the layers (accel.choice)."""
        eager = pool_before_activation(self.model)
        if self.config.fast is False or self.device.type != "cpu":
            return eager  # --no-fast: the kernels are not even built
        fused = fuse_blocks(self.model)
        if fused is self.model:
            return eager
        fused = pool_before_activation(fused)
        if self.config.fast:
            self.cpu_path = {"path": "fused", "why": "--fast"}
            return fused
        earlier = self.earlier_path()
        if earlier is not None:  # a resumed run keeps its path: the same bits as unbroken
            self.cpu_path = {"path": earlier, "why": "this run's earlier choice"}
            return fused if earlier == "fused" else eager
        n = min(self.config.batch_size, self.train_batches.num_examples)
        x, y = self.train_batches.gather(torch.arange(n, device=self.device))

        def step(net: nn.Module) -> None:
            with autocast(self.device, self.precision):
                loss = F.cross_entropy(net(x), y, reduction="sum")
            loss.backward()  # type: ignore[no-untyped-call]

        nets = {"fused": fused, "eager": eager}
        choice = faster(nets, self.model, x, step, build()) if self.world.is_main else None
        name = broadcast_text(self.world, choice.name if choice else "")
        if choice is not None:
            self.cpu_path = {"path": name, "why": "measured", "ms_per_step": choice.ms,
                             "measured_before": choice.cached, "kernels": build()}  # fmt: skip
            if not self.config.quiet:
                log.info("fused CPU kernels: %.1f ms per step against %.1f ms for the eager "
                         "layers (%s); training runs the %s", choice.ms["fused"],
                         choice.ms["eager"], "measured on this machine before"
                         if choice.cached else "measured now",
                         "fused kernels" if name == "fused" else "eager layers")  # fmt: skip
        return nets[name]

    def earlier_path(self) -> str | None:
        """The CPU path this run directory's config.json says the run trained with, if it
        was measured (a resumed run), else None."""
        try:
            chosen = read_config(self.run_dir).get("environment", {}).get("cpu_path", {})
        except CheckpointError:  # a new run: no config.json yet
            return None
        path = chosen.get("path") if isinstance(chosen, dict) else None
        return path if path in ("fused", "eager") else None

    # -- verbs ------------------------------------------------------------------------

    def sgd_step(
        self, x: torch.Tensor, y: torch.Tensor, scale: float,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """One optimizer step on (x, y), through ``forward`` (default: the network); adds to
        the epoch's sums and returns (summed loss, number correct), on the device."""
        with autocast(self.device, self.precision):
            logits = (forward or self.net)(x)  # (b, classes)
            loss_sum = F.cross_entropy(
                logits, y, reduction="sum", label_smoothing=self.config.label_smoothing
            )
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum * scale).backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        loss_sum, correct = loss_sum.detach(), (logits.argmax(dim=1) == y).sum()
        self.state.loss_sum += loss_sum
        self.state.correct += correct
        return loss_sum, correct

    def train_step(self, index: torch.Tensor, global_count: int) -> torch.Tensor:
        """One SGD step on the examples ``index``; returns this process's summed loss of it."""
        loss_sum = self.step(index, global_count)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss_sum

    def eager_step(self, index: torch.Tensor, global_count: int) -> torch.Tensor:
        """The step without graphs: gather (and augment) the batch, then ``sgd_step``."""
        # The mean over the global batch; DDP averages gradients over the world, so scale.
        scale = self.world.size / global_count
        x, y = self.train_batches.gather(index)
        if self.augmentations:
            x = augment(x, self.augmentations, self.augment_generator())
        return self.sgd_step(x, y, scale)[0]

    def augment_generator(self) -> torch.Generator:
        """The random source of this step's augmentation: a function of (seed, step, rank)
        alone, so a resumed run draws what the uninterrupted one would have."""
        seed = (self.config.seed * 1_000_003 + self.state.step) * 1024 + self.world.rank
        return torch.Generator(self.device).manual_seed(seed)

    def graph_step(
        self, index: torch.Tensor, scale: float,
        forward: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """The step a CUDA graph records: gather the batch ``index``, then ``sgd_step``."""
        return self.sgd_step(*self.train_batches.gather(index), scale, forward)

    def global_sums(self) -> tuple[float, float, int]:
        """(loss sum, correct, seen) of the epoch so far, over all ranks."""
        seen = torch.tensor(self.state.seen, device=self.device)
        loss, correct, total = all_sum(self.world, self.state.loss_sum, self.state.correct, seen)
        return loss.item(), correct.item(), int(total.item())

    def train_epoch(self, stop: StopOnSignal, progress: bool) -> None:
        """Train the rest of the current epoch; metrics stay on the device between points."""
        self.model.train()
        epoch, n = self.state.epoch, self.train_batches.num_examples
        num_batches = len(self.train_batches)
        every = max(1, num_batches // POINTS_PER_EPOCH)  # the book divides by zero below 5
        check_every = 1 if self.device.type == "cpu" else every  # reading a CPU value is free
        if self.step.prepare() and not self.config.quiet:  # timed apart from training
            log.info("captured the training step as a CUDA graph in %.2f s",
                     self.step.capture_seconds)  # fmt: skip
        start = time.perf_counter()
        batches = self.train_batches.indices(
            epoch, self.state.batch, self.world.rank, self.world.size
        )
        with tqdm(total=num_batches, initial=self.state.batch, desc=f"epoch {epoch + 1}",
                  disable=not progress, leave=False) as bar:  # fmt: skip
            done = 0  # examples trained by all ranks in this call, for the bar's rate
            for i, index in enumerate(batches, start=self.state.batch):
                global_count = min(self.config.batch_size, n - i * self.config.batch_size)
                done += global_count
                batch_loss = self.train_step(index, global_count)
                self.state.seen += len(index)
                self.state.batch, self.state.step = i + 1, self.state.step + 1
                bar.update()
                if (i + 1) % check_every == 0 and not torch.isfinite(batch_loss):
                    raise self.diverged(i, "is not a finite number")
                if (i + 1) % every == 0 or i == num_batches - 1:
                    loss, correct, seen = self.global_sums()
                    if loss / seen > self.loss_limit:
                        raise self.diverged(i, f"averages {loss / seen:.1f}")
                    self.add_point(epoch + (i + 1) / num_batches, loss / seen, correct / seen)
                    rate = done / (time.perf_counter() - start)
                    bar.set_postfix(
                        loss=f"{loss / seen:.3f}", acc=f"{correct / seen:.3f}", ex_s=f"{rate:,.0f}"
                    )
                # Under torchrun the ranks agree on a stop at the curve's points only: an
                # all-reduce and a host read per batch would cost every step.
                asks = not self.world.distributed or (i + 1) % every == 0 or i == num_batches - 1
                if asks and any_rank(self.world, stop.signum is not None, self.device):
                    self.state.train_seconds += time.perf_counter() - start
                    self.interrupt(stop.signum or signal.SIGTERM)
                every_n = self.config.checkpoint_every
                if every_n and self.state.step % every_n == 0 and i < num_batches - 1:
                    self.save_checkpoint(extra_seconds=time.perf_counter() - start)
        self.state.train_seconds += time.perf_counter() - start

    def evaluate(self, batches: Batches) -> float:
        """Accuracy on ``batches`` (every rank computes the same number)."""
        classes = len(self.classes)
        with autocast(self.device, self.precision):
            confusion = confusion_matrix(self.fast_model, batches, classes, self.config.tta)
        return accuracy(confusion)

    def finish_epoch(self, wall_start: float) -> dict[str, Any]:
        loss, correct, seen = self.global_sums()
        test_acc = self.evaluate(self.test_batches)
        epoch_seconds = self.state.train_seconds - sum(
            r.get("train_seconds", 0.0) for r in self.state.history
        )
        row = {
            "type": "epoch", "epoch": self.state.epoch + 1, "train_loss": loss / seen,
            "train_acc": correct / seen, "test_acc": test_acc,
            **({"val_acc": self.evaluate(self.val_batches)} if self.val_batches else {}),
            "examples_per_sec": seen / max(epoch_seconds, 1e-9),
            "train_seconds": epoch_seconds, "elapsed": time.perf_counter() - wall_start,
        }  # fmt: skip
        self.state.history.append(row)
        self.record(row)
        if self.world.is_main:
            write_metrics_csv(self.run_dir, self.state.history)
            if self.config.keep == "best" and best_epoch(self.state.history) == row["epoch"]:
                save_weights(self.run_dir / BEST, self.model)
        self.state.epoch, self.state.batch, self.state.seen = self.state.epoch + 1, 0, 0
        self.state.loss_sum.zero_()
        self.state.correct.zero_()
        self.save_checkpoint()
        return row

    def add_point(self, x: float, loss: float, acc: float) -> None:
        self.state.points.append({"x": x, "train_loss": loss, "train_acc": acc})
        self.record({"type": "point", **self.state.points[-1]})
        if self.world.is_main:
            self.callbacks.call("on_point", self, self.state.points[-1])
        if self.live is not None:
            self.live.update(self.state.points, self.state.history)

    def record(self, row: dict[str, Any]) -> None:
        if self.world.is_main:
            append_metric(self.run_dir, row)

    def save_checkpoint(self, extra_seconds: float = 0.0) -> None:
        """Rank 0 writes the state (with the epoch's sums over all ranks); never a NaN one."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise self.diverged(self.state.batch - 1)
        loss, correct, seen = all_sum(
            self.world, self.state.loss_sum, self.state.correct,
            torch.tensor(self.state.seen, device=self.device),
        )  # fmt: skip
        if not self.world.is_main:
            return
        state = dataclasses.replace(
            self.state, loss_sum=loss, correct=correct, seen=int(seen.item()),
            train_seconds=self.state.train_seconds + extra_seconds,
        )  # fmt: skip
        save_checkpoint(self.run_dir, self.model, self.optimizer, state, self.config.to_dict(),
                        self.scheduler)  # fmt: skip

    @property
    def loss_limit(self) -> float:
        """A loss this far above a uniform guess (ln classes) means the run has blown up:
        with saturating sigmoids the loss can stay finite while the weights are ruined."""
        return DIVERGED_FACTOR * math.log(len(self.classes))

    def diverged(self, batch_index: int, what: str = "is not a finite number") -> Diverged:
        return Diverged(
            f"training diverged: the loss {what} at epoch {self.state.epoch + 1}, step "
            f"{batch_index + 1} (lr {self.config.lr}; a model that guesses scores "
            f"{math.log(len(self.classes)):.2f}). {self.advice()} " + (
                f"The last good checkpoint remains in {self.run_dir}."
                if (self.run_dir / CHECKPOINT).exists() else "No checkpoint had been written yet."
            )
        )  # fmt: skip

    def advice(self) -> str:
        """What to change, from the values the run diverged with (always finite)."""
        lr, decay = self.config.lr, self.config.weight_decay
        tip = f"Try a lower learning rate, e.g. --lr {max(lr / 10, 1e-300):g}."
        if decay * lr >= 1:  # each step would overshoot zero: the weights grow and flip
            tip += (f" --weight-decay {decay:g} times --lr is {decay * lr:g}, at least 1 per "
                    "step: lower the weight decay too.")  # fmt: skip
        return tip

    def interrupt(self, signum: int) -> None:
        self.save_checkpoint()
        name = signal.Signals(signum).name
        where = f"at epoch {self.state.epoch + 1}, step {self.state.batch}"
        if self.state.batch == 0 and self.state.epoch > 0:  # between epochs
            where = f"after epoch {self.state.epoch}"
        raise Interrupted(
            f"{name}: stopped {where}; checkpoint saved. Resume with: cnnlab train --resume "
            f"{self.run_dir}",
            signum,
        )

    def save_outputs(self) -> None:
        """The trained model, its sidecar and the book's figure (rank 0)."""
        if not self.world.is_main:
            return
        kept = self.state.history[-1]
        if self.config.keep == "best":
            kept = self.state.history[best_epoch(self.state.history) - 1]
            self.model.load_state_dict(load_weights(self.run_dir / BEST))
        save_model(self.run_dir, self.model, {
            "model": self.config.model,
            **model_source(self.config.model),
            "model_options": self.parts.model_options,
            "dataset": self.parts.dataset,
            "classes": list(self.classes),
            "tta": self.config.tta,  # evaluation and prediction average image and mirror
            "preprocessing": preprocessing(self.parts),
            **({"dataset_split": self.parts.about_data["split"]}
               if "split" in self.parts.about_data else {}),
            "final": kept,  # the metrics of the epoch whose weights these are
            "keep": self.config.keep,
            "epochs_trained": len(self.state.history),
        })  # fmt: skip
        from cnnlab.viz.curves import plot_curves  # matplotlib: only once a run has curves

        plot_curves(self.state.points, self.state.history).savefig(
            self.run_dir / CURVES, dpi=150
        )


def prepare_run_dir(
    config: TrainConfig, world: World, asked: set[str]
) -> tuple[TrainConfig, Path, bool, RunLock | None]:  # fmt: skip
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
            saved = {k: v for k, v in read_config(run_dir).items() if k != "environment"}
            epochs_done, source = 0, run_dir / CONFIG
        else:
            (saved, epochs_done), source = checkpoint_config(run_dir), run_dir / CHECKPOINT
        try:
            saved_config = TrainConfig.from_dict(saved)
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{source}: its config is not valid: {e}") from e
        config = resumed_config(saved_config, config, asked, epochs_done)
        if from_start and world.is_main and not config.quiet:
            log.info("%s stopped before its first checkpoint: training it again from the "
                     "start, with its saved config", run_dir)  # fmt: skip
        return config, run_dir, not from_start, RunLock(run_dir) if world.is_main else None
    out_dir = Path(config.out_dir) if config.out_dir else None
    if world.restarted and out_dir is not None and (out_dir / CHECKPOINT).exists():
        # torchrun restarted us: pick up where the run stopped
        return config, out_dir, True, RunLock(out_dir) if world.is_main else None
    lock = None
    if world.is_main:
        out_dir, lock = create_run_dir(out_dir, config.model)
    return config, Path(broadcast_text(world, str(out_dir))), False, lock


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
    device = resolve_device(config.device)
    world = setup(device.type)
    try:
        if asked is None:
            asked = {f.name for f in dataclasses.fields(config)
                     if getattr(config, f.name) != f.default}  # fmt: skip
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
    code = launch(config.to_flags(("nproc", "max_restarts")), config.nproc, config.max_restarts)
    if code != 0:
        raise ProcessesFailed(f"the {config.nproc} training processes failed (torchrun's exit "
                              f"code {code}); their messages are above", code)  # fmt: skip
    run_dir = Path(config.resume or config.out_dir or "")
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
    run = Run(config, build_parts(config, device, run_dir if resume else None, world), run_dir,
              world, device)  # fmt: skip
    if world.is_main:  # TensorBoard is the first callback; the others run where it does
        board = [TensorBoardLog(run_dir)] if config.tensorboard else []
        run.callbacks = Callbacks([*board, *hooks.items])
    talk = world.is_main and not config.quiet
    if world.is_main:
        env = {**environment(run.device, world.size), "precision": run.precision,
               **({"cpu_path": run.cpu_path} if run.cpu_path else {})}  # fmt: skip
        write_config(run_dir, config.to_dict(), env)
        # metrics.jsonl restarts from what the checkpoint knows: no rows are counted twice
        rows = sorted(
            [{"type": "point", **p} for p in run.state.points] + run.state.history,
            key=lambda r: (r["x"], 0) if r["type"] == "point" else (r["epoch"], 1),
        )
        write_metrics(run_dir, rows)
    if resume and talk:
        log.info("resuming %s at epoch %d, step %d", run_dir, run.state.epoch + 1, run.state.batch)
    progress = talk and sys.stderr.isatty()
    wall_start = time.perf_counter()
    asked_to_stop = False  # by a callback
    with StopOnSignal() as stop:
        while (run.state.epoch < config.epochs and not asked_to_stop
               and not stops_early(run.state.history, config.early_stop)):  # fmt: skip
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
                    row["epoch"], config.epochs, row["train_loss"], row["train_acc"], val,
                    row["test_acc"], row["examples_per_sec"], row["elapsed"],
                )  # fmt: skip
    history = run.state.history
    if talk and asked_to_stop and run.state.epoch < config.epochs:
        log.info("stopped after epoch %d: a callback asked to (cnnlab train --resume %s "
                 "--epochs %d goes on)", run.state.epoch, run_dir, config.epochs)  # fmt: skip
    elif talk and run.state.epoch < config.epochs:
        best = best_epoch(history)
        log.info("early stop after epoch %d: val acc has not improved for %d epochs "
                 "(best %.4f, epoch %d)", run.state.epoch, config.early_stop,
                 history[best - 1]["val_acc"], best)  # fmt: skip
    run.save_outputs()
    examples = run.train_batches.num_examples * len(history)
    result = TrainResult(run_dir, history, examples / run.state.train_seconds, str(run.device),
                         run.step.capture_seconds)  # fmt: skip
    run.callbacks.call("on_train_end", run, result)
    if world.is_main:
        final = result.final
        log.info(
            "loss %.3f, train acc %.3f, test acc %.3f",
            final["train_loss"], final["train_acc"], final["test_acc"],
        )  # fmt: skip
        log.info("%.1f examples/sec on %s", result.examples_per_sec, run.device)
        log.info("run saved to %s", run_dir)
    return result
