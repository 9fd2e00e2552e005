"""The run directory: its file names, and every writer and reader of its files.

A run directory holds ``config.json`` (settings and environment), ``metrics.jsonl``
(curve points and epoch rows), ``curves.png``, ``model.safetensors`` + ``model.json``
(the trained model and how to rebuild and feed it) and ``checkpoint.safetensors`` (the
full training state, written by :mod:`cnnlab.training.checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.fsutil import atomic_write_bytes, quote
from cnnlab.models.registry import MAX_CLASSES, MAX_SIDE, build, checked_options
from cnnlab.models.trust import run_factory

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
CHECKPOINT = "checkpoint.safetensors"
METRICS_CSV = "metrics.csv"
BEST = "best.safetensors"  # with --keep best: the weights of the best epoch so far
WEIGHTS = "model.safetensors"
SIDECAR = "model.json"
EXPLORER = "explorer.html"  # cnnlab explore RUN, linked from the report
FORMAT = "cnnlab-model-1"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def save_model(run_dir: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write the weights and a sidecar describing how to rebuild and feed the model.

    ``meta`` holds at least ``model`` (registry name) and ``model_options``.
    """
    digest = save_weights(run_dir / WEIGHTS, model)
    write_json(run_dir / SIDECAR, {"format": FORMAT, **meta, "weights_sha256": digest})


MAX_JSON = 16 << 20  # bytes: a run's JSON files are small; a larger one is not read


def _bounded_text(path: Path) -> str:
    """The text of a run's JSON file, refused unread if it is larger than any run writes."""
    if path.stat().st_size > MAX_JSON:
        raise CheckpointError(f"{path}: over 16 MiB, which no cnnlab run writes; not read")
    return path.read_text()


def read_json(path: Path) -> Any:
    try:
        return json.loads(_bounded_text(path), parse_constant=_no_constant)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found; is {path.parent} a cnnlab run directory?"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({e}); the file is damaged") from e


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a number JSON allows")


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (curve points, epoch rows) of ``run_dir/metrics.jsonl``, each row checked: a
    point has a number ``x``, an epoch row a whole ``epoch``, and every value is a number."""
    path = run_dir / METRICS
    try:
        lines = _bounded_text(path).splitlines()
        rows = [json.loads(line, parse_constant=_no_constant) for line in lines if line.strip()]
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; is {run_dir} a cnnlab run directory?") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: not readable JSON lines ({e}); the file is damaged") from e
    for number, row in enumerate(rows, 1):
        problem = _row_problem(row)
        if problem:
            raise CheckpointError(f"{path}: line {number}: {problem}; the file was edited")
    return [r for r in rows if r["type"] == "point"], [r for r in rows if r["type"] == "epoch"]


def _row_problem(row: Any) -> str | None:
    """What is wrong with one row of metrics.jsonl, or None."""
    if not isinstance(row, dict) or row.get("type") not in ("point", "epoch"):
        return 'each row must be a table whose "type" is "point" or "epoch"'
    key = "x" if row["type"] == "point" else "epoch"
    value = row.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{key} must be a number, got {value!r:.40}"
    if key == "epoch" and not (isinstance(value, int) and value >= 1):
        return f"epoch must be a whole number from 1, got {value!r}"
    for name, v in row.items():
        if name != "type" and (not isinstance(v, int | float) or isinstance(v, bool)):
            return f"{name} must be a number, got {v!r:.40}"
    return None


def load_model(
    run_dir: str | Path, device: torch.device | str = "cpu", trust_model_file: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in ``run_dir``; return it (in eval mode) with its sidecar.

    Every field of ``model.json`` is checked before use, and the model is built only once
    its options and the weights' shapes agree (so no file can make it allocate more than
    the weights it holds). A model of one's own runs only if this user trained with that
    file here, or ``trust_model_file`` (see :mod:`cnnlab.models.trust`).

    A run that is saving its model as this reads may show new weights beside the old
    sidecar for a moment (each file is replaced atomically, one after the other): a
    mismatch of the weights' SHA-256 is read again once before it is reported.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"{run_dir} is not a directory; pass a run directory made by `cnnlab train`"
        )
    if not (run_dir / SIDECAR).exists() and (run_dir / CONFIG).exists():
        raise CheckpointError(
            f"{run_dir} has no trained model yet: the run is still training, or stopped "
            f"before it finished (resume it with: cnnlab train --resume {quote(run_dir)})"
        )
    try:
        return _load_model(run_dir, device, trust_model_file)
    except ChangedWeights:
        time.sleep(0.5)  # a run publishing its model: the sidecar follows the weights
        return _load_model(run_dir, device, trust_model_file)


class ChangedWeights(CheckpointError):
    """The weights' SHA-256 differs from the one their sidecar records."""


MAX_WEIGHTS = 4 << 30  # bytes: the weights a run may hold (VGG-11's are 0.5 GB)


def _load_model(
    run_dir: Path, device: torch.device | str, trust: bool
) -> tuple[nn.Module, dict[str, Any]]:
    path = run_dir / SIDECAR
    meta = check_sidecar(path, read_json(path))
    factory = run_factory(meta["model"], meta.get("model_file"), path, trust)
    try:
        options = checked_options(factory, meta["model"], meta.get("model_options", {}))
    except ConfigError as e:
        raise CheckpointError(f"{path}: model_options: {e}") from None
    state, blob = _read_weights(run_dir / WEIGHTS)
    expected = meta.get("weights_sha256")  # absent in runs saved before it was recorded
    if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
        raise ChangedWeights(
            f"{run_dir / WEIGHTS}: does not match the SHA-256 in {SIDECAR}: the file was "
            "changed after the run saved it"
        )
    del blob
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{run_dir / WEIGHTS}: holds weights that are not finite numbers")
    try:
        with torch.device("meta"):  # the model's shapes, allocating nothing
            _check_fit(build(factory, meta["model"], options), state, run_dir / WEIGHTS)
        model = build(factory, meta["model"], options)
        model.load_state_dict(state)
    except (TypeError, RuntimeError, ConfigError) as e:
        raise CheckpointError(
            f"{run_dir / WEIGHTS}: weights do not fit model {meta['model']!r}: {e}"
        ) from e
    _check_outputs(path, meta, model)
    return model.to(device).eval(), meta


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], bytes]:
    try:
        if path.stat().st_size > MAX_WEIGHTS:
            raise CheckpointError(f"{path}: over 4 GiB, more than any cnnlab model; not read")
        blob = path.read_bytes()
        return load_safetensors(blob), blob
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; the run did not finish") from None
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e


def _check_fit(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """The weights in ``state`` are exactly the tensors of ``model`` (built on the meta
    device), name for name and shape for shape (a lazy layer's shape is known later)."""
    wanted = model.state_dict()
    if set(wanted) != set(state):
        extra, missing = sorted(set(state) - set(wanted)), sorted(set(wanted) - set(state))
        raise CheckpointError(
            f"{path}: weights do not fit the model model.json describes (unexpected: "
            f"{', '.join(extra[:3]) or 'none'}; missing: {', '.join(missing[:3]) or 'none'})"
        )
    for key, tensor in wanted.items():
        lazy = isinstance(
            tensor, nn.parameter.UninitializedParameter | nn.parameter.UninitializedBuffer
        )
        if not lazy and tuple(tensor.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"{path}: weights do not fit the model model.json describes: {key} has "
                f"shape {tuple(state[key].shape)}, the model {tuple(tensor.shape)}"
            )


def check_sidecar(path: Path, meta: Any) -> dict[str, Any]:
    """model.json's fields, each checked for type and range before any is used."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab model sidecar (format {FORMAT})")

    def wrong(field: str, wanted: str) -> CheckpointError:
        return CheckpointError(f"{path}: {field} must be {wanted}, got {meta.get(field)!r:.80}")

    for field in ("model", "dataset"):
        if not isinstance(meta.get(field), str) or not meta[field]:
            raise wrong(field, "a name")
    classes = meta.get("classes")
    if (
        not isinstance(classes, list)
        or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and len(c) <= 200 for c in classes)
    ):
        raise wrong("classes", f"a list of 1 to {MAX_CLASSES} names")
    preprocessing = meta.get("preprocessing")
    if not isinstance(preprocessing, dict):
        raise wrong("preprocessing", "a table")
    shape = preprocessing.get("input_shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[0] not in (1, 3)
        or not all(1 <= d <= MAX_SIDE for d in shape[1:])
    ):
        raise CheckpointError(
            f"{path}: preprocessing.input_shape must be [C, H, W] with C 1 or 3 and H, W from "
            f"1 to {MAX_SIDE}, got {shape!r:.80}"
        )
    if not isinstance(preprocessing.get("background"), str):
        raise CheckpointError(
            f"{path}: preprocessing.background must be words (how the images' background looks)"
        )
    if not isinstance(meta.get("tta", False), bool):
        raise wrong("tta", "true or false")
    if "model_options" in meta and not isinstance(meta["model_options"], dict):
        raise wrong("model_options", "a table of values")
    if not isinstance(meta.get("final", {}), dict):
        raise wrong("final", "a table")
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise wrong("weights_sha256", "a SHA-256")
    return meta


def _check_outputs(path: Path, meta: dict[str, Any], model: nn.Module) -> None:
    """The sidecar's classes and input shape fit the model it describes."""
    shape, classes = meta["preprocessing"]["input_shape"], meta["classes"]
    try:
        with torch.inference_mode():
            output = model.eval()(torch.zeros(1, *shape))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: input_shape {shape} does not fit the model: {e}") from e
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise CheckpointError(f"{path}: the model does not give one row of scores per image")
    if len(classes) != output.shape[-1]:
        raise CheckpointError(
            f"{path}: names {len(classes)} classes but the model has {output.shape[-1]} outputs"
        )


# What config.json records beside the run's settings: where and how it ran, the model
# file it trains (its path and SHA-256, for a model of one's own) and its data's fingerprint.
RECORDS = ("environment", "model_file", "data")


def write_config(
    run_dir: Path,
    config: dict[str, Any],
    environment: dict[str, Any],
    records: dict[str, Any] | None = None,
) -> None:
    write_json(run_dir / CONFIG, {**config, "environment": environment, **(records or {})})


def read_config(run_dir: Path) -> dict[str, Any]:
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{run_dir / CONFIG}: must be a table of settings, got {type(config).__name__}"
        )
    if not isinstance(config.get("environment", {}), dict):
        raise CheckpointError(f"{run_dir / CONFIG}: environment must be a table")
    return config


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's settings in ``config`` (config.json's contents), without its records."""
    return {k: v for k, v in config.items() if k not in RECORDS}


def data_dir_of(run_dir: str | Path, data_dir: str | Path | None) -> str | Path | None:
    """``data_dir``, or where the run read its data (its config's ``data_dir``) when none
    is given: an ``--dataset idx`` run's files are found only there."""
    if data_dir is not None:
        return data_dir
    try:
        recorded = read_config(Path(run_dir)).get("data_dir")
    except CheckpointError:
        return None
    return recorded if isinstance(recorded, str) and recorded else None


def write_metrics(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` with ``rows``, atomically."""
    atomic_write_bytes(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())


def write_metrics_csv(run_dir: Path, epochs: list[dict[str, Any]]) -> None:
    """The epoch rows as CSV, for spreadsheets (rewritten whole, atomically)."""
    columns = [c for c in epochs[0] if c != "type"] if epochs else []
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in epochs]
    atomic_write_bytes(run_dir / METRICS_CSV, ("\n".join(lines) + "\n").encode())


def save_weights(path: Path, model: nn.Module) -> str:
    """Write ``model``'s weights to ``path``; return the file's SHA-256."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(state)
    atomic_write_bytes(path, blob)
    return hashlib.sha256(blob).hexdigest()


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(path.read_bytes())
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot read the saved weights ({e})") from e


def append_metric(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def default_run_dir(model: str) -> Path:
    """``runs/<model>-<date>-<time>``: the name a run gets without ``--out-dir`` (a
    ``-2``, ``-3``, ... is added when another run took it in the same second); a model of
    one's own (``PATH.py:FUNC``) is named by its file and function.

    >>> default_run_dir("/home/me/net.py:net").name[:11], default_run_dir("lenet").name[:6]
    ('net.py-net-', 'lenet-')
    """
    name = model.replace("\\", "/").split("/")[-1].replace(":", "-")
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def create_run_dir(path: Path | None, model: str) -> tuple[Path, RunLock]:
    """Create the run directory, exclusively, and lock it for this process.

    ``path`` None: a fresh :func:`default_run_dir`, with a suffix if that name is taken;
    a given ``path`` must be new or empty and not in use, or it is refused. Either way no
    two runs ever share a directory.
    """
    if path is None:
        return _fresh_run_dir(model)
    check_run_dir(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create {path}: {e.strerror}") from None
    lock = RunLock(path, created)
    if any(path.iterdir()):  # another process created and filled it since the check
        lock.release()
        check_run_dir(path)
    return path, lock


def _fresh_run_dir(model: str) -> tuple[Path, RunLock]:
    stem = default_run_dir(model)
    candidate, n = stem, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate, RunLock(candidate, created=True)
        except FileExistsError:  # another run started in the same second
            n += 1
            candidate = stem.with_name(f"{stem.name}-{n}")
        except OSError as e:
            raise CheckpointError(
                f"cannot create {candidate}: {e.strerror}; pass --out-dir with a directory "
                "you can write to"
            ) from None


class RunLock:
    """An exclusive lock on a run directory, held while one process trains in it (a fresh
    run or a resumed one); the system drops it when the process ends, however it ends."""

    def __init__(self, run_dir: Path, created: bool = False) -> None:
        self.run_dir, self.created = run_dir, created  # created: by this process, just now
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; new directories are still exclusive
            return
        self.fd = os.open(run_dir, os.O_RDONLY)  # the directory itself is what is locked
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise CheckpointError(
                f"another cnnlab process is training in {run_dir}; wait for it to end, or "
                "train in another directory"
            ) from None
        remove_stale_temporaries(run_dir)  # no other writer can be at work in it now

    def release(self, failed: bool = False) -> None:
        """Unlock; after a ``failed`` start, also remove the directory if this process
        created it and nothing was written into it."""
        if failed and self.created and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of writes that a killed process left in ``run_dir``
    (``atomic_writer``'s ``.NAME.XXXX.tmp``), once it is locked for this process."""
    for leftover in run_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            leftover.unlink()


def check_run_dir(path: Path) -> None:
    """Refuse a run directory that holds files, or that cannot be created."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(
            f"{path} already exists and is not empty; cnnlab never overwrites a run. "
            "Choose another --out-dir or leave it out for a fresh one under runs/."
        )
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"cannot create {path}: it is a symbolic link to nowhere")
    parent = next(p for p in [path, *path.parents] if p.exists())
    if not parent.is_dir() or not _writable(parent):
        raise CheckpointError(f"cannot create {path}: {parent} is not a writable directory")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)
