"""A registry of models by name: ``create_model("lenet")``; and models of your own, named
by reference: ``create_model("net.py:net")`` or ``create_model("package.module:net")``.

A factory (registered or referenced) is any function that returns an ``nn.Module``. A run
passes it ``num_classes``, ``in_channels``, ``image_size`` and ``backend`` only if it
accepts them; its other keyword arguments with defaults are the model's options
(``--model-options``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
# What a run knows and hands to a factory that takes it; never a --model-options option.
CONTEXT = ("num_classes", "in_channels", "image_size", "backend")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under ``name``: any function returning an ``nn.Module``; its
    keyword arguments with defaults are the model's options."""
    if ":" in name:
        raise ValueError(f"model name {name!r}: a ':' marks a reference to a file or module")

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
    settable = [k for k in defaults if k not in CONTEXT]
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
    """Build the model ``name`` (registered, or a reference), with keyword ``overrides``
    of its options; of the run's context (``CONTEXT``) it gets what it accepts.

    >>> sum(p.numel() for p in create_model("lenet").parameters())
    61706
    """
    factory = registered(name)
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {k: v for k, v in overrides.items() if takes_any or k in parameters or k not in CONTEXT}
    unknown = [] if takes_any else sorted(set(given) - set(parameters))
    if unknown:
        options = [k for k in model_options(name) if k not in CONTEXT]
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    try:
        model = factory(**given)
    except TypeError as e:  # a required argument no one gives
        raise ConfigError(f"model {name!r} could not be built: {e}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r}: its function returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def is_reference(name: str) -> bool:
    """Whether ``name`` names a function of one's own (``PATH.py:FUNC``, ``module:FUNC``)."""
    return ":" in name


def referenced(reference: str) -> tuple[ModelFactory, Path]:
    """The function ``PATH.py:FUNC`` or ``package.module:FUNC`` names, and its file."""
    where, _, name = reference.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"model {reference!r}: write PATH.py:FUNCTION or package.module:FUNCTION")
    try:
        if where.endswith(".py"):
            path = reference_file(reference)
            if not path.is_file():
                raise ConfigError(
                    f"model {reference!r}: {path} not found; give the path of "
                    "the Python file that defines the model"
                )
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
            spec = importlib.util.spec_from_file_location(f"cnnlab_model_{digest}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
            path = Path(module.__file__ or where)
    except ConfigError:
        raise
    except Exception as e:  # the user's code: any error it raises on import
        raise ConfigError(
            f"model {reference!r}: importing {where} failed: {type(e).__name__}: {e}"
        ) from e
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"model {reference!r}: {path} defines no function {name!r}")
    return factory, path


def reference_file(reference: str) -> Path:
    """The file a reference's code is in, found without running a model file again (a
    module is imported once per process)."""
    where = reference.rpartition(":")[0]
    if where.endswith(".py"):
        return Path(where).resolve()
    return Path(importlib.import_module(where).__file__ or where)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registered(name: str) -> ModelFactory:
    """The factory registered under ``name``, or the one the reference ``name`` names."""
    if is_reference(name):
        return referenced(name)[0]
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}, or name a "
            "function of your own as PATH.py:FUNCTION or package.module:FUNCTION"
        ) from None
