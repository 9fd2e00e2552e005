"""The environment variables cnnlab reads, all of them, and only here.

Each is read where a choice it makes begins, and the value is passed on from there: the
command line reads ``CNNLAB_OFFLINE`` once and hands ``offline`` down (``train()`` and
``load_dataset()`` read it where Python calls them without saying); the CPU kernels'
target is read when a model's blocks are fused, and the fused blocks keep that build;
torchrun's variables when a process joins its group. Where data and files live
(``CNNLAB_DATA``, ``CNNLAB_MIRRORS``, the XDG directories) is read when they are looked
for, as every XDG program does. Nothing in cnnlab writes the environment.
"""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on")


def offline() -> bool:
    """``CNNLAB_OFFLINE`` (1, true, yes, on): never download."""
    return os.environ.get("CNNLAB_OFFLINE", "").strip().lower() in TRUE


def data_dir() -> str:
    """``CNNLAB_DATA``: a directory that must hold the dataset's files ('' if unset)."""
    return os.environ.get("CNNLAB_DATA", "")


def mirrors() -> str:
    """``CNNLAB_MIRRORS``: comma-separated base URLs to download from ('' if unset)."""
    return os.environ.get("CNNLAB_MIRRORS", "")


def max_pixels() -> str:
    """``CNNLAB_MAX_PIXELS``: the largest image opened, in pixels ('' if unset)."""
    return os.environ.get("CNNLAB_MAX_PIXELS", "").strip()


def cpu_isa() -> str:
    """``CNNLAB_CPU_ISA``: the instruction set the CPU kernels are built for ('' if unset)."""
    return os.environ.get("CNNLAB_CPU_ISA", "")


def compiler() -> str:
    """``CC``: the C compiler to build the kernels with ('' if unset)."""
    return os.environ.get("CC", "")


def cache_home() -> str:
    """``XDG_CACHE_HOME`` ('' if unset)."""
    return os.environ.get("XDG_CACHE_HOME", "")


def config_home() -> str:
    """``XDG_CONFIG_HOME`` ('' if unset)."""
    return os.environ.get("XDG_CONFIG_HOME", "")


def under_torchrun() -> bool:
    """Whether this process is one of a torchrun group (``WORLD_SIZE`` is set)."""
    return "WORLD_SIZE" in os.environ


def torchrun() -> tuple[int, int, int]:
    """(``WORLD_SIZE``, ``LOCAL_RANK``, ``TORCHELASTIC_RESTART_COUNT``) as torchrun sets
    them for the processes it starts (1, 0, 0 outside torchrun)."""
    get = os.environ.get
    return (
        int(get("WORLD_SIZE", "1")),
        int(get("LOCAL_RANK", "0")),
        int(get("TORCHELASTIC_RESTART_COUNT", "0")),
    )


def for_child(**changes: str) -> dict[str, str]:
    """This process's environment with ``changes``, for a process it starts."""
    return {**os.environ, **changes}
