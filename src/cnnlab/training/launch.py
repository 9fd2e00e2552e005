"""Where a run lives and who runs it: its directory (new, resumed, or restarted by
torchrun) with the lock that keeps others out, and a run of several processes launched
under torchrun."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.logs import log
from cnnlab.models.registry import is_reference
from cnnlab.models.trust import run_factory
from cnnlab.rundir import (
    CHECKPOINT,
    CONFIG,
    RunLock,
    create_run_dir,
    read_config,
    read_metrics,
    settings,
)
from cnnlab.training.checkpoint import checkpoint_config
from cnnlab.training.config import TrainConfig
from cnnlab.training.control import ProcessesFailed
from cnnlab.training.distributed import World, broadcast_text, launch
from cnnlab.training.outputs import TrainResult


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


def launch_fields() -> tuple[str, ...]:
    """The fields declared with ``_launch``: how a run is launched, not what it trains.

    >>> launch_fields()[:3]
    ('data_dir', 'device', 'out_dir')
    """
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("launch"))


# What a resumed run may change: how it is launched, and how long it trains (the epochs).
# Every field of what is trained stays as the run saved it. (A resumed run stays in its
# own directory: prepare_run_dir refuses another --out-dir before this is asked.)
RESUMABLE = ("epochs", *(name for name in launch_fields() if name != "out_dir"))


def resumed_config(
    saved: TrainConfig, config: TrainConfig, asked: set[str], epochs_done: int
) -> TrainConfig:
    """The config a run saved as ``saved`` continues with when resumed by ``config``:
    the fields in ``asked`` (what the user set) that :data:`RESUMABLE` allows, taken from
    ``config``; any other asked field must keep its saved value.

    >>> saved = TrainConfig(epochs=1)
    >>> resumed_config(saved, TrainConfig(epochs=3, resume="r"), {"epochs", "resume"}, 1).epochs
    3
    """
    for name in sorted(asked - set(RESUMABLE)):
        value, kept = getattr(config, name), getattr(saved, name)
        if value != kept:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the run's saved {name} = {kept!r}: a resumed "
                f"run keeps what defines it. Leave {flag} out to resume, or start a new run "
                f"(without --resume) to train with {flag} {value}."
            )
    changes = {name: getattr(config, name) for name in asked & set(RESUMABLE)}
    epochs = changes.get("epochs", saved.epochs)
    if epochs < epochs_done:
        raise ConfigError(
            f"--epochs {epochs} is fewer than the {epochs_done} epochs the run has already "
            f"trained; give --epochs {epochs_done} or more (or leave it out)"
        )
    if epochs != saved.epochs and saved.schedule != "constant":
        raise ConfigError(
            f"--epochs {epochs}: the run's {saved.schedule} schedule was laid out over "
            f"{saved.epochs} epochs, so it cannot be extended exactly; resume without "
            "--epochs, or start a new run with the length you want"
        )
    return dataclasses.replace(saved, **changes)
