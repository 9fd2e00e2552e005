"""What a finished run leaves for its users: the trained weights, the sidecar that says how
to use them (model.json), and the book's figure of its curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from cnnlab.data import ImageSet
from cnnlab.data.datasets import is_folder
from cnnlab.models.trust import model_record
from cnnlab.rundir import BEST, CURVES, load_weights, save_model
from cnnlab.training.checkpoint import TrainState
from cnnlab.training.config import TrainConfig

if TYPE_CHECKING:
    from cnnlab.training.trainer import Parts


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch (1-based) of the highest validation accuracy (the first, on a tie)."""
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return best + 1


def input_shape(split: ImageSet) -> tuple[int, int, int]:
    """(channels, height, width) of the images of ``split``."""
    shape = split.images.shape
    return (1, shape[1], shape[2]) if len(shape) == 3 else (shape[1], shape[2], shape[3])


def preprocessing(parts: Parts) -> dict[str, Any]:
    """How the model's input is made from a picture (model.json's ``preprocessing``)."""
    channels, height, width = input_shape(parts.train_set)
    own = is_folder(parts.dataset)
    return {
        "input_shape": [channels, height, width],
        "grayscale": channels == 1,
        "scale": "pixel / 255",
        "background": "as in your images" if own else "dark (0), as in the dataset",
        **({"resize": "Lanczos, to the input's size"} if own else {}),
    }


def save_outputs(
    run_dir: Path, model: nn.Module, config: TrainConfig, parts: Parts, state: TrainState
) -> None:
    """The trained model (the best epoch's weights with ``keep = "best"``), model.json and
    curves.png."""
    kept = state.history[-1]
    if config.keep == "best":
        kept = state.history[best_epoch(state.history) - 1]
        model.load_state_dict(load_weights(run_dir / BEST))
    save_model(
        run_dir,
        model,
        {
            "model": config.model,
            **model_record(config.model),
            "model_options": parts.model_options,
            "dataset": parts.dataset,
            "classes": list(parts.classes),
            "tta": config.tta,  # evaluation and prediction average image and mirror
            **({"subset": config.subset} if config.subset else {}),
            "preprocessing": preprocessing(parts),
            **({"dataset_split": parts.about_data["split"]} if "split" in parts.about_data else {}),
            "final": kept,  # the metrics of the epoch whose weights these are
            "keep": config.keep,
            "epochs_trained": len(state.history),
        },
    )
    from cnnlab.viz.curves import plot_curves  # matplotlib: only once a run has curves

    plot_curves(state.points, state.history).savefig(run_dir / CURVES, dpi=150)
