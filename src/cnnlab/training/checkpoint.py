"""Saving and loading trained weights: ``model.safetensors`` plus a ``model.json`` sidecar.

Nothing here unpickles: safetensors holds only tensors and the sidecar is JSON.
"""

from __future__ import annotations

import json
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

WEIGHTS = "model.safetensors"
SIDECAR = "model.json"
FORMAT = "cnnlab-model-1"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def save_model(run_dir: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write the weights and a sidecar describing how to rebuild and feed the model.

    ``meta`` holds at least ``model`` (registry name) and ``model_options``.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / WEIGHTS, save_safetensors(state))
    write_json(run_dir / SIDECAR, {"format": FORMAT, **meta})


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
    path = run_dir / "metrics.jsonl"
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
    """Rebuild the model saved in ``run_dir``; return it (in eval mode) with its sidecar."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"{run_dir} is not a directory; pass a run directory made by `cnnlab train`"
        )
    meta = read_json(run_dir / SIDECAR)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{run_dir / SIDECAR}: not a cnnlab model sidecar (format {FORMAT})")
    try:
        model = create_model(meta["model"], **meta.get("model_options", {}))
    except (KeyError, TypeError, CnnlabError) as e:
        raise CheckpointError(f"{run_dir / SIDECAR}: cannot rebuild the model: {e}") from e
    try:
        state = load_safetensors((run_dir / WEIGHTS).read_bytes())
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
    return model.to(device).eval(), meta
