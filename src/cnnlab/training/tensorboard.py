"""TensorBoard event files for a run (``RUN/tensorboard/``): the curve points, the epoch
metrics, the learning rate and the first conv layer's kernels, through the optional
``tensorboard`` package (``pip install 'cnnlab[tensorboard]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import CONV_TYPES

DIRECTORY = "tensorboard"


class TensorBoardLog:
    """Writes what the trainer records as TensorBoard scalars and images: the run's first
    callback (see :mod:`cnnlab.training.callbacks`)."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / DIRECTORY))

    def on_point(self, run: Any, row: dict[str, Any]) -> None:
        """A curve point, at the optimizer step it follows (an interrupted run keeps it)."""
        step, lr = run.state.step, run.optimizer.param_groups[0]["lr"]
        self.writer.add_scalar("train/loss", row["train_loss"], step)
        self.writer.add_scalar("train/acc", row["train_acc"], step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.flush()

    def on_epoch_end(self, run: Any, row: dict[str, Any]) -> None:
        """An epoch's metrics, and the first conv layer's kernels as images."""
        model: nn.Module = run.model
        epoch = row["epoch"]
        for key in ("train_loss", "train_acc", "test_acc", "val_acc", "examples_per_sec"):
            if key in row:
                self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        conv = next((m for m in model.modules() if isinstance(m, CONV_TYPES)), None)
        if conv is not None:
            kernels = conv.weight.detach().float().cpu()  # (out, in, kh, kw)
            kernels = kernels[:, :1]  # the first input channel of each
            low, high = (
                kernels.amin(dim=(1, 2, 3), keepdim=True),
                kernels.amax(dim=(1, 2, 3), keepdim=True),
            )
            scaled = (kernels - low) / (high - low).clamp(min=1e-12)
            self.writer.add_images("conv1/kernels", scaled, epoch, dataformats="NCHW")
        self.writer.flush()

    def on_train_end(self, run: Any, result: Any) -> None:
        self.writer.close()


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of ``run_dir``'s event files, by tag (with tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / DIRECTORY))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


__all__ = ["DIRECTORY", "TensorBoardLog", "read_scalars"]
