"""Building a run: what it trains, on what data (:class:`Parts`), from a config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import ImageSet
from cnnlab.data.datasets import data_change, fingerprint, parse_size, subset_test_size
from cnnlab.errors import CheckpointError
from cnnlab.models import create_model, init_weights, parse_options
from cnnlab.models.trial import try_on_batch
from cnnlab.rundir import CHECKPOINT, read_config
from cnnlab.training.checkpoint import TrainState, load_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import World
from cnnlab.training.optim import make_optimizer, make_scheduler


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
    world: World | None = None,
) -> Parts:
    """The data, model, optimizer and schedule ``config`` names, on ``device``; with
    ``run_dir``, restored from its checkpoint."""
    from cnnlab.data.folder import load_splits  # PIL: only when a run loads its data

    train_set, test_set, classes, about = load_splits(
        config.dataset,
        config.data_dir,
        config.channels,
        parse_size(config.image_size),
        config.offline or None,  # None: as CNNLAB_OFFLINE says
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
    shape = train_set.shape
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
        if world is not None and not world.is_main:  # rank 0 carries the epoch's sums
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
        # faster in channels-last (docs/speed.md).
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
