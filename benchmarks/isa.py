"""``--isa`` for the CPU benchmarks: build cnnlab's kernels for one instruction set and run
PyTorch's own CPU kernels (ATen's and oneDNN's) at no higher a level, so that one AVX-512
machine measures what an AVX2 machine runs, baseline included.

The process re-executes itself once with the environment set (torch reads it at import).
"""

from __future__ import annotations

import os
import sys

TORCH_LEVELS = {  # what PyTorch itself may use for each target
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "portable": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def use_isa(name: str) -> None:
    """Continue in a process whose kernels and PyTorch run at the level of ``name``."""
    wanted = {"CNNLAB_CPU_ISA": name, **TORCH_LEVELS[name]}
    if any(os.environ.get(key) != value for key, value in wanted.items()):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})
