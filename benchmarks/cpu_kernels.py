"""The fused CPU block's kernels and the linear layers' matrix product against this
machine's limits, and against the eager ops they replace, at the book's shapes (batch 256,
threads: torch's).

The machine: the float32 multiply-add rate for the target instruction set
(benchmarks/cpu_peak.c, built with the same compiler and flags as the kernels) and the
memory bandwidth (a 256 MB tensor copy). Each kernel: milliseconds per call (median of 7
rounds), the convolution's useful GFLOP/s (2 x the multiply-adds of the convolution as
defined; products of padding not counted) and its share of the peak.
The eager rows are the same block as PyTorch runs it (oneDNN's convolution, the
activation, the pooling), channels-last, forward and forward + backward. The linear rows:
each of LeNet's three dense layers' products (forward, input gradient, weight gradient)
by cnnlab's kernel (``cpu_dense.c``; the forward's weight transpose included) and by
PyTorch (``F.linear`` and ``@``: MKL's sgemm on x86).

``--isa`` builds the kernels (and the peak loop) for one target: ``native`` (default),
``avx2`` (x86-64-v3), ``avx512`` (x86-64-v4) or ``portable``, and holds PyTorch's eager
kernels to the same level (benchmarks/isa.py); an AVX-512 machine measures both x86 targets.

    python benchmarks/cpu_kernels.py
    python benchmarks/cpu_kernels.py --isa avx2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from isa import use_isa

from cnnlab.accel.cpu import ISAS, BlockFunction, _product, compile_library, isa, library

BATCH = 256
BLOCKS = {  # name: (channels in, size, maps, kernel, padding), the book's LeNet
    "block1": (1, 28, 6, 5, 2),
    "block2": (6, 14, 16, 5, 0),
}
LINEARS = {"linear1": (400, 120), "linear2": (120, 84), "linear3": (84, 10)}  # in, out


def median_ms(fn: Callable[[], Any], calls: int = 20, rounds: int = 7) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def machine() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "peak.so"
        why = compile_library([Path(__file__).with_name("cpu_peak.c")], target, ISAS[isa()])
        if why:
            raise SystemExit(why)
        lib = ctypes.CDLL(str(target))
        peak, lanes = lib.cnnlab_peak_fma, lib.cnnlab_peak_lanes()
        peak.argtypes, peak.restype = [ctypes.c_long, ctypes.c_int], ctypes.c_float
        threads, steps = torch.get_num_threads(), 5_000_000
        rate = {
            t: 12 * lanes * 2 * steps * t / median_ms(lambda t=t: peak(steps, t), 1, 5) / 1e6
            for t in (1, threads)
        }
    big = torch.ones(64 * 2**20)  # 256 MB
    out = torch.empty_like(big)
    copy_ms = median_ms(lambda: out.copy_(big), 3, 5)
    return {
        "vector_lanes": lanes,
        "peak_gflops_1_thread": round(rate[1], 1),
        f"peak_gflops_{threads}_threads": round(rate[threads], 1),
        "copy_gbytes_per_sec": round(2 * big.numel() * 4 / copy_ms / 1e6, 1),
    }


def rates(ms: float, macs: int, peak: float) -> dict[str, Any]:
    gflops = 2 * macs / ms / 1e6
    return {"ms": round(ms, 3), "gflops": round(gflops, 1), "of_peak": round(gflops / peak, 2)}


def blocks(peak: float, act: int, pool: int) -> dict[str, Any]:
    activation = torch.relu if act else torch.sigmoid
    pooling = F.max_pool2d if pool else F.avg_pool2d
    out: dict[str, Any] = {}
    for name, (c, size, o, k, pad) in BLOCKS.items():
        torch.manual_seed(0)
        needs_input_grad = c > 1  # the first block's input is the data
        x = torch.rand(BATCH, c, size, size, requires_grad=needs_input_grad)
        w = (torch.randn(o, c, k, k) / k).requires_grad_()
        b = torch.zeros(o, requires_grad=True)
        xl = x.detach().contiguous(memory_format=torch.channels_last)
        wl = w.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        xl.requires_grad_(needs_input_grad)
        side = size + 2 * pad - k + 1
        macs = BATCH * o * side * side * c * k * k  # of one convolution pass
        grad = torch.ones(BATCH, o, side // 2, side // 2)

        forwards = {
            "fused": partial(BlockFunction.apply, x, w, b, pad, act, pool, True, library()),
            "eager": lambda x=xl, w=wl, b=b, pad=pad: pooling(
                activation(F.conv2d(x, w, b, padding=pad)), 2
            ),
        }
        passes = 3 if needs_input_grad else 2  # backward: weight (and input) gradient
        for kind, forward in forwards.items():
            with torch.no_grad():
                ms_forward = median_ms(forward)
            ms_both = median_ms(lambda f=forward, g=grad: f().backward(g))
            out[f"{name}_{kind}"] = {
                "forward": rates(ms_forward, macs, peak),
                "backward": rates(ms_both - ms_forward, macs * (passes - 1), peak),
            }
    return out


def linears(peak: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (k, n) in LINEARS.items():
        torch.manual_seed(0)
        x, w, b, g = torch.randn(BATCH, k), torch.randn(n, k), torch.randn(n), torch.randn(BATCH, n)
        products = {
            "fused": {
                "forward": lambda x=x, w=w, b=b: _product(library(), x, w.t().contiguous(), b),
                "input_grad": lambda g=g, w=w: _product(library(), g, w),
                "weight_grad": lambda g=g, x=x: _product(library(), g.t(), x),
            },
            "eager": {
                "forward": lambda x=x, w=w, b=b: F.linear(x, w, b),
                "input_grad": lambda g=g, w=w: g @ w,
                "weight_grad": lambda g=g, x=x: g.t() @ x,
            },
        }
        for kind, passes in products.items():
            out[f"{name}_{kind}"] = {
                part: rates(median_ms(fn, 200), BATCH * k * n, peak) for part, fn in passes.items()
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--isa",
        choices=list(ISAS),
        default="native",
        help="the instruction set to build the kernels for",
    )
    use_isa(parser.parse_args().isa)
    torch.set_flush_denormal(True)
    if library() is None:
        raise SystemExit("the fused kernels cannot be built here (see the notice above)")
    limits = machine()
    peak = limits[f"peak_gflops_{torch.get_num_threads()}_threads"]
    report = {
        "benchmark": "cpu_kernels",
        "isa": isa(),
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": limits,
        "sigmoid_avg": blocks(peak, 0, 0),
        "relu_max": blocks(peak, 1, 1),
        "linear": linears(peak),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
