"""Named starting points for a training config (``--recipe``)."""

from __future__ import annotations

from typing import Any

# Named starting points for a config. ``book`` is the chapter's recipe (the defaults);
# ``best`` is the most accurate LeNet variant found under 100k parameters that trains
# in about five minutes on a 2-core CPU (docs/training.md, with its numbers).
RECIPES: dict[str, dict[str, Any]] = {
    "book": {},
    "best": {
        "model_options": {
            "activation": "relu",
            "pool": "max",
            "kernel": 3,
            "channels": [8, 32, 96],
            "dense": [128],
            "batch_norm": True,
        },
        "epochs": 16,
        "batch_size": 128,
        "optimizer": "nesterov",
        "lr": 0.1,
        "weight_decay": 5e-4,
        "schedule": "warmup-cosine",  # chosen as "onecycle" before that name cycled momentum
        "label_smoothing": 0.1,
        "init": "kaiming",
        "augment": "flip",
        "tta": True,
    },
}
