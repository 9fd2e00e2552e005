"""What a finished run leaves for its users: the trained weights, the sidecar that says how
to use them (model.json), and the book's figure of its curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.data.datasets import is_folder
from cnnlab.models.trust import model_record
from cnnlab.rundir import BEST, CURVES, load_weights, save_model
from cnnlab.training.checkpoint import TrainState
from cnnlab.training.metrics import best_epoch
from cnnlab.training.parts import Parts


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


def preprocessing(parts: Parts) -> dict[str, Any]:
    """How the model's input is made from a picture (model.json's ``preprocessing``)."""
    channels, height, width = parts.train_set.shape
    own = is_folder(parts.dataset)
    return {
        "input_shape": [channels, height, width],
        "grayscale": channels == 1,
        "scale": "pixel / 255",
        "background": "as in your images" if own else "dark (0), as in the dataset",
        **({"resize": "Lanczos, to the input's size"} if own else {}),
    }


def save_outputs(
    run_dir: Path,
    model: nn.Module,
    parts: Parts,
    state: TrainState,
    reference: str,
    keep: str,
    tta: bool,
    subset: int,
) -> None:
    """The trained model (the best epoch's weights with ``keep = "best"``), model.json and
    curves.png; ``reference``: the model's name, or its own file's reference."""
    kept = state.history[-1]
    if keep == "best":
        kept = state.history[best_epoch(state.history) - 1]
        model.load_state_dict(load_weights(run_dir / BEST))
    save_model(
        run_dir,
        model,
        {
            "model": reference,
            **model_record(reference),
            "model_options": parts.model_options,
            "dataset": parts.dataset,
            "classes": list(parts.classes),
            "tta": tta,  # evaluation and prediction average image and mirror
            **({"subset": subset} if subset else {}),
            "preprocessing": preprocessing(parts),
            **({"dataset_split": parts.about_data["split"]} if "split" in parts.about_data else {}),
            "final": kept,  # the metrics of the epoch whose weights these are
            "keep": keep,
            "epochs_trained": len(state.history),
        },
    )
    from cnnlab.viz.curves import plot_curves  # matplotlib: only once a run has curves

    plot_curves(state.points, state.history).savefig(run_dir / CURVES, dpi=150)
