"""Loading a folder dataset (``--dataset folder:DIR``) of 28x28 PNGs: the first time (every
file decoded and converted) and the second (the cache of the decoded arrays, checked
against the files' names, sizes and modification times). Prints one JSON object.

    python benchmarks/folder_load.py --images 20000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.folder import load_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # an empty cache
        root = Path(tmp) / "pictures"
        rng = np.random.default_rng(0)
        for i in range(args.images):
            folder = root / f"class{i % args.classes}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{i}.png")
        times = []
        for _ in range(2):
            start = time.perf_counter()
            data = load_folder(f"folder:{root}")
            times.append(time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "images": args.images,
                    "shape": list(data.train.images.shape[1:]),
                    "first_load_s": round(times[0], 2),
                    "second_load_s": round(times[1], 2),
                    "target_second_load_s": 5.0,
                    "met": times[1] < 5.0,
                }
            )
        )


if __name__ == "__main__":
    main()
