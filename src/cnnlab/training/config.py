"""The configuration of a training run; the defaults are the book's recipe."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cnnlab.data.datasets import is_folder, parse_size
from cnnlab.errors import ConfigError
from cnnlab.training.recipes import RECIPES

DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2**63 - 1  # torch.manual_seed's range
FLOAT32_MAX = 3.4028234663852886e38  # rates and decays beyond it overflow the weights' type
KEEP = ("last", "best")
BOOLS = ("tta", "compile", "quiet", "tensorboard", "trust_model_file", "offline", "remeasure")
MAX_THREADS = 1024


def _trained(default: Any, help: str) -> Any:
    """A field of what is trained (it defines the result), with its one-line help, shown
    by `cnnlab train --help`."""
    return field(default=default, metadata={"help": help})


def _launch(default: Any, help: str) -> Any:
    """A field of how a run is launched (where, on what, in how many processes, what it
    prints): the same run may be resumed with another value."""
    return field(default=default, metadata={"help": help, "launch": True})


@dataclass
class TrainConfig:
    """Everything that defines a run; each field is one ``cnnlab train`` flag. Each field
    is either part of what is trained (``_trained``: the model, data, optimizer, schedule,
    epochs, seed, augmentation, precision) or of how the run is launched (``_launch``: the
    directories, device, processes, restarts, checkpoint cadence, logging); see
    :func:`launch_fields`."""

    model: str = _trained(
        "lenet",
        "a registered model (cnnlab models; the Modern-CNN networks train with the book's lr, "
        "batch size and epochs unless given), or one of your own: PATH.py:FUNC or "
        "package.module:FUNC (see cnnlab summary --model)",
    )
    backend: str = _trained(
        "torch", "conv and pooling layers: torch (torch.nn) or scratch (cnnlab.layers)"
    )
    dataset: str = _trained(
        "fashion-mnist",
        "fashion-mnist, mnist, idx (any four IDX files in --data-dir), or "
        "folder:DIR (your own images: DIR/<class>/*, or DIR/train/<class>/* and DIR/test/...)",
    )
    data_dir: str | None = _launch(
        None, "directory holding the IDX files (default: CNNLAB_DATA, the cache, the OS package)"
    )
    channels: int = _trained(
        0, "folder datasets: 1 (grayscale) or 3 (RGB); 0: what most of the images are"
    )
    image_size: str = _trained(
        "", "folder datasets: HxW the images are resized to (default 28x28 grayscale, 32x32 RGB)"
    )
    epochs: int = _trained(10, "passes over the training set")
    batch_size: int = _trained(256, "examples per SGD step")
    lr: float = _trained(0.9, "learning rate (the peak one with --schedule onecycle)")
    optimizer: str = _trained("sgd", "sgd (the book's, plain), momentum, nesterov or adamw")
    momentum: float = _trained(0.9, "momentum of --optimizer momentum and nesterov")
    weight_decay: float = _trained(0.0, "weight decay (L2 for sgd, decoupled for adamw)")
    schedule: str = _trained(
        "constant",
        "learning rate per step: constant (book), cosine (down to 0), onecycle (Smith's: up "
        "from lr/25 over 30% of the steps, then down, momentum the other way), warmup-cosine "
        "(linear warm-up over the first 25% of steps, then cosine down)",
    )
    label_smoothing: float = _trained(0.0, "cross-entropy label smoothing, in [0, 1)")
    augment: str = _trained(
        "",
        "batched on the training device, comma separated: crop (pad 2, random 28x28), "
        "flip (left-right), erase (random erasing); empty: none (book)",
    )
    subset: int = _trained(
        0,
        "train on a fixed random N of the training examples and test on a fifth as many "
        "(the same ones every run; eval and report use them too): a quick try of a big "
        "network on a CPU. 0: all of them",
    )
    val_size: int = _trained(
        0,
        "hold out this many training examples (the same ones every run) and report their "
        "accuracy each epoch as val acc, for tuning without the test set",
    )
    early_stop: int = _trained(
        0, "stop when val acc has not improved for this many epochs (needs --val-size); 0: never"
    )
    keep: str = _trained(
        "last",
        "which epoch's weights model.safetensors holds: last, or best (by val acc; "
        "needs --val-size)",
    )
    tta: bool = _trained(
        False,
        "evaluate with test-time augmentation: average over the image and its left-right mirror",
    )
    init: str = _trained(
        "xavier", "weight init of conv and linear layers: xavier (book), kaiming or default"
    )
    model_options: str | dict[str, Any] = _trained(  # noqa: RUF009  (a string default: immutable)
        "",
        "options of --model as KEY=VALUE, space separated: 'kernel=3 channels=16,32' "
        "(in a TOML file, a [model_options] table of values: kernel = 3, channels = [16, 32])",
    )
    seed: int = _trained(0, "seed of the initial weights and of the per-epoch shuffle")
    device: str = _launch("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps")
    out_dir: str | None = _launch(
        None, "run directory to create (default: runs/<model>-<date>-<time>); never overwritten"
    )
    checkpoint_every: int = _launch(
        0, "also checkpoint every N optimizer steps (0: at the end of each epoch only)"
    )
    resume: str | None = _launch(
        None,
        "continue the run in this directory from its last checkpoint, with its config; "
        "--epochs extends it, and --data-dir, --device, --quiet, --checkpoint-every may change",
    )
    trust_model_file: bool = _launch(
        False,
        "with --resume: run the model file (Python code) that someone else's run names; "
        "without it only registered models and files you trained with here are run",
    )
    nproc: int = _launch(1, "processes to train in, started through torchrun (gloo on CPU)")
    max_restarts: int = _launch(
        0, "with --nproc: times torchrun restarts failed workers; they resume from a checkpoint"
    )
    fast: bool | None = _launch(
        None,
        "on a CPU, run each conv -> activation -> pool (or batch norm -> ReLU -> max pool) "
        "block as one fused kernel; on CUDA, replay each training step as one captured CUDA "
        "graph (one process). Default: on a CPU, whichever of the fused kernels and the eager "
        "layers a few timed steps find faster (remembered per CPU, threads, torch and "
        "shapes); --fast forces the kernels, --no-fast the plain eager loop",
    )
    remeasure: bool = _launch(
        False,
        "on a CPU, time the fused kernels against the eager layers again rather than reuse "
        "the remembered answer (one measured on a busy machine is timed again anyway)",
    )
    threads: int = _launch(
        0,
        "CPU threads of torch and the fused kernels. 0: torch's count, less the cores other "
        "programs keep busy (measured 4 times a second); N: exactly N whatever the load "
        "(the same count gives the same bits)",
    )
    precision: str = _trained(
        "fp32",
        "fp32, or bf16: train and evaluate under bfloat16 autocast (CPUs with AVX512-BF16 or "
        "AMX, CUDA GPUs from Ampere on; elsewhere it says so and runs fp32)",
    )
    compile: bool = _launch(
        False,
        "on CUDA with --fast, compile the step's network with torch.compile before capturing "
        "it (faster steps, seconds of compilation first)",
    )
    tensorboard: bool = _launch(
        False,
        "also write TensorBoard event files into RUN/tensorboard (needs the extra: "
        "pip install 'cnnlab[tensorboard]')",
    )
    quiet: bool = _launch(
        False, "no progress bar and no per-epoch lines; summary lines still print"
    )
    offline: bool = _launch(False, "never download a missing dataset (as CNNLAB_OFFLINE=1 does)")

    def __post_init__(self) -> None:
        names = ("checkpoint_every", "max_restarts", "val_size", "early_stop", "subset", "threads")
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.threads > MAX_THREADS:
            raise ConfigError(
                f"threads must be at most {MAX_THREADS}, got {self.threads}: give the number "
                "of cores to train on, or 0 to follow the free ones"
            )
        for name in ("epochs", "batch_size", "nproc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.lr, int | float) or not 0 < self.lr <= FLOAT32_MAX:
            raise ConfigError(
                f"lr must be a positive finite number, got {self.lr!r} (float32, the weights' "
                f"type, holds up to {FLOAT32_MAX:.4g})"
            )
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
        for name in ("momentum", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
        decay = self.weight_decay
        if not isinstance(decay, int | float) or not 0 <= decay <= FLOAT32_MAX:
            raise ConfigError(
                f"weight_decay must be >= 0 and finite, got {decay!r} (float32, the weights' "
                f"type, holds up to {FLOAT32_MAX:.4g})"
            )
        self._check_words()

    def _check_words(self) -> None:
        """The fields that are names, choices, flags and sizes (numbers: __post_init__).
        The tables they are checked against load here, with torch, so that the command
        line reads this module (to parse its flags) without it."""
        from cnnlab.data.augment import parse_augment
        from cnnlab.device import PRECISIONS
        from cnnlab.models.common import INITS
        from cnnlab.training.optim import OPTIMIZERS, SCHEDULES

        for name in ("data_dir", "out_dir", "resume"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):  # a Path is as good as its string
                setattr(self, name, os.fspath(value))
            elif value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a directory's path, got {value!r}")
        resume = self.resume
        if resume is not None and (not isinstance(resume, str) or not resume.strip()):
            raise ConfigError(f"resume must name a run directory, got {resume!r}")
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("init", INITS),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        if self.fast is not None and not isinstance(self.fast, bool):
            raise ConfigError(f"fast must be true or false, got {self.fast!r}")
        for name in BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.model_options, str | dict):
            raise ConfigError(
                "model_options must be KEY=VALUE words or a [model_options] table, got "
                f"{self.model_options!r}"
            )
        for name in (
            "model",
            "backend",
            "dataset",
            "augment",
            "device",
            "keep",
            "init",
            "image_size",
        ):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.channels not in (0, 1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        parse_size(self.image_size)
        if (self.channels or self.image_size) and not is_folder(self.dataset):
            raise ConfigError(
                f"--channels and --image-size convert the images of a folder dataset "
                f"(--dataset folder:DIR); {self.dataset}'s are used as they are"
            )
        parse_augment(self.augment)
        if self.keep not in KEEP:
            raise ConfigError(f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}")
        for name, wanted in (("early_stop", self.early_stop), ("keep", self.keep == "best")):
            if wanted and not self.val_size:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} {getattr(self, name)} judges epochs by validation accuracy: add "
                    "--val-size N (e.g. --val-size 5000) to hold out N training examples for it"
                )
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_flags(self, leave_out: tuple[str, ...] = ()) -> list[str]:
        """The ``cnnlab train`` flags that give this config (those off their defaults), each
        value joined to its flag (``--data-dir=-odd`` stays one word with its value).

        >>> TrainConfig(lr=0.1, fast=False).to_flags()
        ['--lr=0.1', '--no-fast']
        """
        flags = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default or f.name in leave_out:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                flags.append(flag if value else "--no-" + flag[2:])
            else:
                text = format_options(value) if isinstance(value, dict) else str(value)
                flags.append(f"{flag}={text}")
        return flags

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of ``values``; a ``recipe`` key (see :data:`RECIPES`) fills in the
        fields that ``values`` leaves out, and so do the book's settings for a network of
        the Modern-CNN chapter (its learning rate, batch size and epochs).

        >>> TrainConfig.from_dict({"recipe": "best", "epochs": 3}).epochs
        3
        >>> TrainConfig.from_dict({"model": "resnet18"}).lr
        0.01
        """
        from cnnlab.models.modern import BOOK_TRAINING

        values = dict(values)
        recipe = values.pop("recipe", "book")
        if not isinstance(recipe, str) or recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown config keys {unknown}; known keys: {sorted(known | {'recipe'})}"
            )
        model = values.get("model")
        book = BOOK_TRAINING.get(model, {}) if recipe == "book" and isinstance(model, str) else {}
        return cls(**{**RECIPES[recipe], **book, **values})


def format_options(options: dict[str, Any]) -> str:
    """Model options as ``--model-options`` words.

    >>> format_options({"kernel": 3, "channels": [8, 16], "batch_norm": True})
    'kernel=3 channels=8,16 batch_norm=true'
    """

    def word(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return str(value)

    return " ".join(f"{key}={word(value)}" for key, value in options.items())
