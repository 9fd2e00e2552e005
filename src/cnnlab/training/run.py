"""One training run and the loop's verbs on it: an epoch of steps (:meth:`Run.train_epoch`),
its curve points, its evaluation and row, its checkpoints, and stopping."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from cnnlab.accel.cores import FreeCores
from cnnlab.data import Batches
from cnnlab.data.augment import parse_augment
from cnnlab.device import autocast, bf16_missing
from cnnlab.logs import log
from cnnlab.training.callbacks import Callbacks
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.control import Diverged, StopOnSignal, interrupted
from cnnlab.training.cpu_path import choose_forward
from cnnlab.training.distributed import World, all_sum, any_rank, data_parallel
from cnnlab.training.divergence import diverged, loss_limit
from cnnlab.training.metrics import EVAL_BATCH, accuracy, confusion_matrix
from cnnlab.training.parts import Parts
from cnnlab.training.step import Step, graph_lengths, graphable

POINTS_PER_EPOCH = 5  # intra-epoch curve points, as the book's animator draws
ONE_PROCESS = World()


class Run:
    """One training run: the loop's verbs, over the parts it is handed; ``callbacks`` are
    called on this process (rank 0's get the built-in ones and the user's)."""

    def __init__(
        self,
        config: TrainConfig,
        parts: Parts,
        run_dir: Path,
        world: World = ONE_PROCESS,
        callbacks: Iterable[Any] = (),
    ) -> None:
        self.config, self.parts, self.run_dir, self.world = config, parts, run_dir, world
        self.epochs = config.epochs
        self.device = next(parts.model.parameters()).device  # build_parts put it there
        self.precision = effective_precision(config.precision, self.device, world.is_main)
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        self.classes, self.state, device = parts.classes, parts.state, self.device
        self.state.sums_to(device)
        self.train_batches = Batches(parts.train_set, config.batch_size, device, True, config.seed)
        self.test_batches = Batches(parts.test_set, EVAL_BATCH, device)
        val_set = parts.val_set
        self.val_batches = Batches(val_set, EVAL_BATCH, device) if val_set else None
        talk = world.is_main and not config.quiet
        self.cores = FreeCores.on(device, config.threads, quiet=not talk)
        # what is trained is self.model; what runs its forward here, its blocks maybe fused
        self.forward_net, self.cpu_path = choose_forward(
            self.model,
            self.train_batches,
            world,
            run_dir,
            self.precision,
            config.fast,
            config.quiet,
            config.remeasure,
        )
        augmentations = parse_augment(config.augment)
        self.step = Step(
            self.train_batches,
            data_parallel(self.forward_net, world, device),  # DDP under torchrun
            self.optimizer,
            self.state,
            self.precision,
            config.label_smoothing,
            augmentations,
            config.seed,
            world.rank,
            world.size,
        )
        examples = self.train_batches.num_examples
        wanted = config.fast is not False and graphable(
            device,
            world.size,
            examples,
            config.batch_size,
            config.optimizer,
            config.schedule,
            bool(augmentations),
        )
        self.graph_lengths = graph_lengths(config.batch_size, examples, wanted)
        self.graphs: dict[int, Any] = {}  # self.step replayed from a CUDA graph, by length
        self.capture_seconds = 0.0
        self.callbacks = Callbacks(callbacks)

    def train_epoch(self, stop: StopOnSignal) -> None:
        """Train the rest of the current epoch; metrics stay on the device between points."""
        self.model.train()
        state, world, hooks = self.state, self.world, self.callbacks
        size, n = self.config.batch_size, len(self.train_batches)
        every = max(1, n // POINTS_PER_EPOCH)  # the book divides by zero below 5
        check_every = 1 if self.device.type == "cpu" else every  # reading a CPU value is free
        start = time.perf_counter()
        hooks.call("on_epoch_start", self)
        batches = self.train_batches.indices(state.epoch, state.batch, world.rank, world.size)
        for i, index in enumerate(batches, start=state.batch):
            count = min(size, self.train_batches.num_examples - i * size)
            graph = self.graphs.get(count)
            loss, _ = graph(index) if graph is not None else self.step(index, count)
            if self.scheduler is not None:
                self.scheduler.step()
            state.seen, state.batch, state.step = state.seen + len(index), i + 1, state.step + 1
            hooks.call("on_step", self)
            self.cores.tick()
            if (i + 1) % check_every == 0 and not torch.isfinite(loss):
                raise self.diverged(i, "is not a finite number")
            point = (i + 1) % every == 0 or i == n - 1
            if point:
                self.add_point(i, n)
            # Under torchrun the ranks agree on a stop at the curve's points only: an
            # all-reduce and a host read per batch would cost every step.
            if (point or not world.distributed) and any_rank(
                world, stop.signum is not None, self.device
            ):
                state.train_seconds += time.perf_counter() - start
                self.interrupt(stop.signum or signal.SIGTERM)
            every_n = self.config.checkpoint_every
            if every_n and state.step % every_n == 0 and i < n - 1:
                self.save_checkpoint(extra_seconds=time.perf_counter() - start)
        state.train_seconds += time.perf_counter() - start

    def add_point(self, i: int, n: int) -> None:
        """A point of the curve after batch ``i`` of ``n``: the epoch's means so far."""
        loss, correct, seen = self.global_sums()
        if loss / seen > loss_limit(len(self.classes)):
            raise self.diverged(i, f"averages {loss / seen:.1f}")
        x = self.state.epoch + (i + 1) / n
        point = {"x": x, "train_loss": loss / seen, "train_acc": correct / seen}
        self.state.points.append(point)
        self.callbacks.call("on_point", self, point)

    def global_sums(self) -> tuple[float, float, int]:
        """(loss sum, correct, seen) of the epoch so far, over all ranks."""
        seen = torch.tensor(self.state.seen, device=self.device)
        loss, correct, total = all_sum(self.world, self.state.loss_sum, self.state.correct, seen)
        return loss.item(), correct.item(), int(total.item())

    def evaluate(self, batches: Batches) -> float:
        """Accuracy on ``batches`` (every rank computes the same number)."""
        classes, tta = len(self.classes), self.config.tta
        with autocast(self.device, self.precision):
            return accuracy(confusion_matrix(self.forward_net, batches, classes, tta))

    def finish_epoch(self, wall_start: float) -> dict[str, Any]:
        """Evaluate, record the epoch's row (``on_evaluated``: the metrics files, the best
        weights), checkpoint."""
        accuracies = {"test_acc": self.evaluate(self.test_batches)}
        if self.val_batches:
            accuracies["val_acc"] = self.evaluate(self.val_batches)
        row = self.state.epoch_row(*self.global_sums(), accuracies, wall_start)
        self.state.history.append(row)
        self.state.epoch, self.state.batch, self.state.seen = self.state.epoch + 1, 0, 0
        self.state.loss_sum.zero_()
        self.state.correct.zero_()
        self.callbacks.call("on_evaluated", self, row)
        self.save_checkpoint()
        return row

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
        where, config = (self.state.epoch + 1, batch_index + 1), self.config
        return diverged(
            what, where, len(self.classes), config.lr, config.weight_decay, self.run_dir
        )

    def interrupt(self, signum: int) -> None:
        """Checkpoint, then stop with the signal's exit code and how to resume."""
        self.save_checkpoint()
        raise interrupted(signum, self.state.epoch, self.state.batch, self.run_dir)


def effective_precision(precision: str, device: torch.device, is_main: bool) -> str:
    """What a run computes in: ``precision``, but fp32 (said once) where bf16 is missing."""
    if precision == "bf16" and (missing := bf16_missing(device)) is not None:
        if is_main:
            log.warning("--precision bf16: %s, so this run trains in fp32", missing)
        return "fp32"
    return precision
