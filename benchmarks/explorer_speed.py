"""The explorer page of a trained run in headless Chromium: its size, the time from
navigation to the first prediction on screen, and the time of one more prediction (a click
on "next": the forward pass and the repaint of every layer). Prints one JSON object.

Needs Debian's chromium and the test extra (Playwright). Without --run it trains the book's
LeNet for one epoch on Fashion-MNIST first.

    python benchmarks/explorer_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from cnnlab.training import TrainConfig, train
from cnnlab.viz.explorer import explore_run

NEXT = (
    "(() => { const t = performance.now(); document.getElementById('next').click(); "
    "return performance.now() - t; })()"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: train one)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train(TrainConfig(epochs=1, out_dir=f"{tmp}/run", quiet=True)).run_dir
        page_file = Path(tmp) / "explorer.html"
        page_file.write_text(explore_run(run).html)
        size = page_file.stat().st_size
        first, more = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            for _ in range(args.repeats):
                page = browser.new_page()  # a fresh page each time: nothing cached
                page.goto(page_file.as_uri() + "#index=0")
                page.wait_for_function("document.body.dataset.firstPredictionMs !== undefined")
                first.append(float(page.evaluate("document.body.dataset.firstPredictionMs")))
                more += [page.evaluate(NEXT) for _ in range(10)]
                page.close()
            version = browser.version
            browser.close()
    print(
        json.dumps(
            {
                "chromium": version,
                "page_bytes": size,
                "first_prediction_ms_median": round(statistics.median(first), 1),
                "first_prediction_ms_max": round(max(first), 1),
                "next_image_ms_median": round(statistics.median(more), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
