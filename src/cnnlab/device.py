"""Which device a run uses, how it is set up, and how it is described in a run's record."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from cnnlab.errors import ConfigError
from cnnlab.version import __version__


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available.

    Under torchrun each process takes CUDA device ``local_rank``."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        name = next(kind for kind, ok in available.items() if ok)
    if not available.get(name, False):
        usable = ", ".join(kind for kind, ok in available.items() if ok)
        raise ConfigError(
            f"device {name!r} is not available in this PyTorch build or machine; "
            f"use --device auto or one of: {usable}"
        )
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def denormals_flushed() -> bool:
    """Whether this thread's float arithmetic flushes subnormal numbers to zero now.

    >>> before = denormals_flushed()
    >>> with numerics(torch.device("cpu")):  # on x86 and ARM, which can flush
    ...     denormals_flushed()
    True
    >>> denormals_flushed() == before
    True
    """
    return float(torch.tensor([1e-40]) * 1.0) == 0.0


@contextmanager
def numerics(device: torch.device) -> Iterator[None]:
    """The numeric settings cnnlab runs ``device``'s work under, for the block only: on a
    CPU, denormals are flushed to zero (sigmoid activations push values into the denormal
    range, where x86 float arithmetic is ~20x slower; flushing changes no result we
    report). On exit the flush, the thread count and the float32 matmul precision are put
    back as they were, so a notebook computes afterwards as it did before."""
    flushed, threads = denormals_flushed(), torch.get_num_threads()
    precision = torch.get_float32_matmul_precision()
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushed)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)


PRECISIONS = ("fp32", "bf16")


def bf16_missing(device: torch.device) -> str | None:
    """None where ``device`` has bfloat16 arithmetic for autocast to use, else why not."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:  # Ampere and later
            return None
        return f"{torch.cuda.get_device_name(device)} (compute {major}.{minor}) has no bf16 units"
    if device.type == "cpu":
        flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if any(getattr(torch.cpu, flag, lambda: False)() for flag in flags):
            return None
        return "this CPU has neither AVX512-BF16 nor AMX"
    return f"bf16 autocast is not offered on {device.type}"


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device``: bf16 runs matrix products and
    convolutions in bfloat16 (weights and optimizer state stay float32); fp32 is none."""
    if precision != "bf16":  # not even a disabled autocast: older torch refuses some devices
        return nullcontext()
    # no weight cache: a CUDA graph replays the casts it recorded, and a step uses each
    # weight once
    return torch.autocast(device.type, torch.bfloat16, cache_enabled=False)


def environment(device: torch.device, processes: int = 1) -> dict[str, Any]:
    """Library versions and device, recorded with every run."""
    import matplotlib

    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "threads": torch.get_num_threads(),
        "processes": processes,
    }
