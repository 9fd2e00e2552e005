"""Forward + backward time of each from-scratch op against ``torch.nn.functional`` and,
for 2-D cross-correlation, against the book's pixel loop (``corr2d_reference``).

Sizes: LeNet's (batch 256) and 224x224 images. Each timing is the median of several
repeats in this process, so the ratios compare like with like on a noisy machine.

    python benchmarks/ops.py            # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab import ops


def fwd_bwd_ms(
    fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], repeats: int
) -> float:
    """Median milliseconds of fn(*inputs) followed by backward of its sum, grads for all inputs."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        fn(*leaves).sum().backward()
        if i:  # the first call warms up
            times.append((time.perf_counter() - start) * 1e3)
        for t in leaves:
            t.grad = None
    return statistics.median(times)


def cases() -> list[dict[str, Any]]:
    """Each op and size: its inputs and (cnnlab fn, torch fn, reference fn or None)."""
    r = torch.randn
    avg, mx = (
        (lambda x: ops.avg_pool2d(x, 2), lambda x: F.avg_pool2d(x, 2), None),
        (lambda x: ops.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2), None),
    )
    conv = lambda **kw: (  # noqa: E731
        lambda x, w, b: ops.conv2d(x, w, b, **kw),
        lambda x, w, b: F.conv2d(x, w, b, **kw),
    )
    corr_torch = lambda x, k: F.conv2d(x[None, None], k[None, None])[0, 0]  # noqa: E731
    return [
        {
            "op": "corr2d",
            "size": "28x28, 5x5 kernel",
            "inputs": [r(28, 28), r(5, 5)],
            "fns": (ops.corr2d, corr_torch, ops.corr2d_reference),
        },
        {
            "op": "corr2d",
            "size": "224x224, 5x5 kernel",
            "inputs": [r(224, 224), r(5, 5)],
            "fns": (ops.corr2d, corr_torch, ops.corr2d_reference),
            "reference_repeats": 1,
        },
        {
            "op": "conv2d",
            "size": "LeNet conv1: 256x1x28x28, 6x1x5x5, padding 2",
            "inputs": [r(256, 1, 28, 28), r(6, 1, 5, 5), r(6)],
            "fns": (*conv(padding=2), None),
        },
        {
            "op": "conv2d",
            "size": "LeNet conv2: 256x6x14x14, 16x6x5x5",
            "inputs": [r(256, 6, 14, 14), r(16, 6, 5, 5), r(16)],
            "fns": (*conv(), None),
        },
        {
            "op": "conv2d",
            "size": "8x3x224x224, 16x3x5x5, stride 2, padding 2",
            "inputs": [r(8, 3, 224, 224), r(16, 3, 5, 5), r(16)],
            "fns": (*conv(stride=2, padding=2), None),
        },
        {
            "op": "avg_pool2d",
            "size": "LeNet pool1: 256x6x28x28, 2x2",
            "inputs": [r(256, 6, 28, 28)],
            "fns": avg,
        },
        {
            "op": "avg_pool2d",
            "size": "LeNet pool2: 256x16x10x10, 2x2",
            "inputs": [r(256, 16, 10, 10)],
            "fns": avg,
        },
        {
            "op": "max_pool2d",
            "size": "LeNet pool1: 256x6x28x28, 2x2",
            "inputs": [r(256, 6, 28, 28)],
            "fns": mx,
        },
        {
            "op": "max_pool2d",
            "size": "LeNet pool2: 256x16x10x10, 2x2",
            "inputs": [r(256, 16, 10, 10)],
            "fns": mx,
        },
        {
            "op": "max_pool2d",
            "size": "8x16x224x224, 3x3, stride 2, padding 1",
            "inputs": [r(8, 16, 224, 224)],
            "fns": (lambda x: ops.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), None),
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    rows = []
    for case in cases():
        ours, theirs, reference = case["fns"]
        row: dict[str, Any] = {"op": case["op"], "size": case["size"]}
        row["cnnlab_ms"] = round(fwd_bwd_ms(ours, case["inputs"], args.repeats), 3)
        row["torch_ms"] = round(fwd_bwd_ms(theirs, case["inputs"], args.repeats), 3)
        row["cnnlab_over_torch"] = round(row["cnnlab_ms"] / row["torch_ms"], 2)
        if reference is not None:
            repeats = case.get("reference_repeats", args.repeats)
            row["reference_ms"] = round(fwd_bwd_ms(reference, case["inputs"], repeats), 1)
            row["reference_over_cnnlab"] = round(row["reference_ms"] / row["cnnlab_ms"], 1)
        rows.append(row)
    meta = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timing": "forward + backward, median ms",
    }
    print(json.dumps({**meta, "ops": rows}, indent=1))


if __name__ == "__main__":
    main()
