"""A registry of models by name: ``create_model("lenet")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
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


def parse_options(name: str, options: str | Mapping[str, Any]) -> dict[str, Any]:
    """Options of model ``name``, typed by their defaults: ``KEY=VALUE`` words (the command
    line's ``--model-options``) or a mapping of values (a TOML ``[model_options]`` table).

    >>> parse_options("lenet", "kernel=3 channels=16,32 batch_norm=true")
    {'kernel': 3, 'channels': (16, 32), 'batch_norm': True}
    >>> parse_options("lenet", {"kernel": 3, "channels": [16, 32]})
    {'kernel': 3, 'channels': (16, 32)}
    """
    defaults = model_options(name)
    settable = [k for k in defaults if k not in ("num_classes", "backend")]
    pairs: list[tuple[str, Any, str]] = []  # (key, value or None, as the user wrote it)
    if not isinstance(options, str | Mapping):
        raise ConfigError(
            f"model options must be KEY=VALUE words or a table of values, got {options!r}"
        )
    if isinstance(options, str):
        for word in options.split():
            key, sep, value = word.partition("=")
            pairs.append((key, value if sep else None, word))
    else:
        pairs = [(key, value, f"{key} = {value!r}") for key, value in options.items()]
    typed: dict[str, Any] = {}
    for key, value, written in pairs:
        if value is None or key not in settable:
            raise ConfigError(
                f"bad model option {written!r}: write KEY=VALUE with KEY one of "
                f"{', '.join(settable)} (num_classes comes from the dataset, backend from "
                "--backend)"
            )
        if key in typed:
            raise ConfigError(f"model option {key} is given twice; give it once")
        typed[key] = _typed(key, value, defaults[key], text=isinstance(options, str))
    return typed


def _typed(key: str, value: Any, default: Any, text: bool) -> Any:
    """``value`` (command-line ``text``, or a TOML value of its own type) as the type of
    ``default``."""

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    try:
        if isinstance(default, str) and isinstance(value, str):
            return value
        if text and isinstance(default, bool):
            return {"true": True, "false": False}[value.lower()]
        if text and isinstance(default, tuple):
            return tuple(int(v) for v in value.split(",") if v)
        if text and isinstance(default, int | float):
            return type(default)(value)
        if isinstance(default, bool) and isinstance(value, bool):
            return value
        if isinstance(default, tuple) and isinstance(value, list) and all(map(integer, value)):
            return tuple(value)
        if isinstance(default, float) and (integer(value) or isinstance(value, float)):
            return float(value)
        if integer(default) and integer(value):
            return value
    except (KeyError, ValueError):
        pass
    raise ConfigError(f"model option {key} takes a value like {default!r}, got {value!r}")


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
