"""A registry of models by name: ``create_model("lenet")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under ``name``; its keyword arguments are the model's overrides."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def variant_of(name: str) -> tuple[str | None, dict[str, Any]]:
    """(base model, options) when ``name`` was registered as another model's variant (a
    ``functools.partial`` of its factory), else ``(None, {})``."""
    factory = registered(name)
    if isinstance(factory, partial):
        base = next((n for n, f in _REGISTRY.items() if f is factory.func), None)
        return base, dict(factory.keywords)
    return None, {}


def model_options(name: str) -> dict[str, Any]:
    """The overridable options of model ``name`` with their defaults."""
    factory = registered(name)
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def parse_options(name: str, text: str) -> dict[str, Any]:
    """Options of model ``name`` from ``KEY=VALUE`` words, typed by their defaults.

    >>> parse_options("lenet", "kernel=3 channels=16,32 batch_norm=true")
    {'kernel': 3, 'channels': (16, 32), 'batch_norm': True}
    """
    defaults = model_options(name)
    options: dict[str, Any] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or key not in defaults or key in ("num_classes", "backend"):
            settable = [k for k in defaults if k not in ("num_classes", "backend")]
            raise ConfigError(
                f"bad model option {word!r}: write KEY=VALUE with KEY one of "
                f"{', '.join(settable)} (num_classes comes from the dataset, backend from "
                "--backend)"
            )
        default = defaults[key]
        try:
            if isinstance(default, bool):
                options[key] = {"true": True, "false": False}[value.lower()]
            elif isinstance(default, tuple):
                options[key] = tuple(int(v) for v in value.split(",") if v)
            elif isinstance(default, int | float):
                options[key] = type(default)(value)
            else:
                options[key] = value
        except (KeyError, ValueError):
            raise ConfigError(
                f"model option {key} takes a value like {default!r}, got {value!r}"
            ) from None
    return options


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``, with keyword ``overrides`` of its options.

    >>> sum(p.numel() for p in create_model("lenet").parameters())
    61706
    """
    options = model_options(name)
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    return registered(name)(**overrides)


def registered(name: str) -> ModelFactory:
    """The factory registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None
