"""Names of a package that load their module on first use, so that importing one part of
cnnlab (``cnnlab.ops``, ``cnnlab.data.idx``) does not import all the others."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table`` maps each name to the module
    that defines it (relative to ``package`` unless it holds a dot)."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name] if "." in table[name] else f"{package}.{table[name]}"
        return getattr(importlib.import_module(module), name)

    return __getattr__
