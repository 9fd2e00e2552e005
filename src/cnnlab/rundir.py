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

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.models import create_model
from cnnlab.models.registry import file_digest, is_reference

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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found; is {path.parent} a cnnlab run directory?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({e}); the file is damaged") from e


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (curve points, epoch rows) of ``run_dir/metrics.jsonl``."""
    path = run_dir / METRICS
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; is {run_dir} a cnnlab run directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not readable JSON lines ({e}); the file is damaged") from e
    return [r for r in rows if r.get("type") == "point"], [
        r for r in rows if r.get("type") == "epoch"
    ]


def load_model(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in ``run_dir``; return it (in eval mode) with its sidecar.

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
            f"before it finished (resume it with: cnnlab train --resume {run_dir})"
        )
    try:
        return _load_model(run_dir, device)
    except ChangedWeights:
        time.sleep(0.5)  # a run publishing its model: the sidecar follows the weights
        return _load_model(run_dir, device)


def own_model(meta: dict[str, Any]) -> str:
    """The model to rebuild: the registered name, or for a model of one's own the
    reference to the file it was trained from (by its absolute path), checked unchanged."""
    name: str = meta["model"]
    source = meta.get("model_file")
    if not is_reference(name) or not isinstance(source, dict):
        return name
    path = Path(str(source.get("path")))
    if not path.is_file():
        raise CheckpointError(
            f"the model's code {path} is gone (the run was trained with --model {name}); put "
            "the file back there to use the run"
        )
    if file_digest(path) != source.get("sha256"):
        raise CheckpointError(
            f"the model's code {path} changed since the run was trained (SHA-256 "
            f"{file_digest(path)[:12]}..., recorded {str(source.get('sha256'))[:12]}...): the "
            "weights may no longer fit it; restore the file, or train again"
        )
    return f"{path}:{name.rpartition(':')[2]}"


class ChangedWeights(CheckpointError):
    """The weights' SHA-256 differs from the one their sidecar records."""


def _load_model(run_dir: Path, device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    meta = read_json(run_dir / SIDECAR)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{run_dir / SIDECAR}: not a cnnlab model sidecar (format {FORMAT})")
    try:
        model = create_model(own_model(meta), **meta.get("model_options", {}))
    except (KeyError, TypeError, CnnlabError) as e:
        raise CheckpointError(f"{run_dir / SIDECAR}: cannot rebuild the model: {e}") from e
    try:
        blob = (run_dir / WEIGHTS).read_bytes()
        state = load_safetensors(blob)
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir / WEIGHTS} not found; the run did not finish") from None
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{run_dir / WEIGHTS}: not a valid safetensors file ({e})") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{run_dir / WEIGHTS}: weights do not fit model {meta['model']!r}: {e}"
        ) from e
    expected = meta.get("weights_sha256")  # absent in runs saved before it was recorded
    if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
        raise ChangedWeights(
            f"{run_dir / WEIGHTS}: does not match the SHA-256 in {SIDECAR}: the file was "
            "changed after the run saved it"
        )
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{run_dir / WEIGHTS}: holds weights that are not finite numbers")
    _check_sidecar(run_dir / SIDECAR, meta, model)
    return model.to(device).eval(), meta


def _check_sidecar(path: Path, meta: dict[str, Any], model: nn.Module) -> None:
    """The sidecar's classes and input shape fit the model it describes."""
    preprocessing = meta.get("preprocessing")
    shape = preprocessing.get("input_shape") if isinstance(preprocessing, dict) else None
    classes = meta.get("classes")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise CheckpointError(f"{path}: preprocessing.input_shape must be [C, H, W], got {shape!r}")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: classes must be a list of names, got {classes!r}")
    try:
        with torch.inference_mode():
            outputs = model.eval()(torch.zeros(1, *shape)).shape[-1]
    except RuntimeError as e:
        raise CheckpointError(f"{path}: input_shape {shape} does not fit the model: {e}") from e
    if len(classes) != outputs:
        raise CheckpointError(
            f"{path}: names {len(classes)} classes but the model has {outputs} outputs"
        )


def write_config(run_dir: Path, config: dict[str, Any], environment: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG, {**config, "environment": environment})


def read_config(run_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = read_json(run_dir / CONFIG)
    return config


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
    ``-2``, ``-3``, ... is added when another run took it in the same second)."""
    return Path("runs") / f"{model}-{datetime.now():%Y%m%d-%H%M%S}"


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
