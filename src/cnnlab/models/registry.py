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
import inspect
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import ModuleType
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
    return _options(registered(name))


def _options(factory: ModelFactory) -> dict[str, Any]:
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
        if isinstance(default, tuple) and isinstance(value, list) and all(map(_integer, value)):
            return tuple(value)
        if isinstance(default, float) and (_integer(value) or isinstance(value, float)):
            return float(value)
        if _integer(default) and _integer(value):
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
    return build(registered(name), name, overrides)


def build(factory: ModelFactory, name: str, overrides: Mapping[str, Any]) -> nn.Module:
    """The model ``factory`` (called ``name`` in messages) makes with ``overrides``."""
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {k: v for k, v in overrides.items() if takes_any or k in parameters or k not in CONTEXT}
    unknown = [] if takes_any else sorted(set(given) - set(parameters))
    if unknown:
        options = [k for k in _options(factory) if k not in CONTEXT]
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    try:
        model = factory(**given)
    except TypeError as e:  # a required argument no one gives
        raise ConfigError(f"model {name!r} could not be built: {e}") from None
    except (RuntimeError, MemoryError) as e:  # e.g. channels=100000,100000
        if isinstance(e, RuntimeError) and "alloc" not in str(e):
            raise
        raise ConfigError(
            f"model {name!r} with these options does not fit in memory; choose smaller "
            "channel and dense widths"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r}: its function returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def checked_options(factory: ModelFactory, name: str, options: Any) -> dict[str, Any]:
    """``options`` read from a file (a run's model.json), checked against ``factory``'s
    signature before any call: each one an option it declares with a default, of that
    default's type, or a context value it takes (``CONTEXT``), of the kind a run gives.

    >>> from cnnlab.models.lenet import lenet
    >>> checked_options(lenet, "lenet", {"kernel": 3, "channels": [8, 16], "num_classes": 3})
    {'kernel': 3, 'channels': (8, 16), 'num_classes': 3}
    """
    if not isinstance(options, dict):
        raise ConfigError(f"model_options must be a table of values, got {options!r}")
    defaults = _options(factory)
    parameters = inspect.signature(factory).parameters
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key in CONTEXT:
            if key in parameters:
                checked[key] = _context_value(key, value)
            continue
        if key not in defaults:
            raise ConfigError(f"model {name!r} has no option {key!r}")
        checked[key] = _typed(key, value, defaults[key], text=False)
    return checked


MAX_CLASSES = 100_000
MAX_SIDE = 1024  # pixels, as --image-size allows


def _context_value(key: str, value: Any) -> Any:
    """A context value (``CONTEXT``) read from a file, in the range a run gives."""
    if key == "backend" and isinstance(value, str) and value.isidentifier():
        return value
    if key == "num_classes" and _integer(value) and 1 <= value <= MAX_CLASSES:
        return value
    if key == "in_channels" and value in (1, 3) and _integer(value):
        return value
    if (
        key == "image_size"
        and isinstance(value, list | tuple)
        and len(value) == 2
        and all(_integer(v) and 1 <= v <= MAX_SIDE for v in value)
    ):
        return tuple(value)
    raise ConfigError(f"model option {key} cannot be {value!r}")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_reference(name: str) -> bool:
    """Whether ``name`` names a function of one's own (``PATH.py:FUNC``, ``module:FUNC``)."""
    return ":" in name


def referenced(reference: str, sha256: str | None = None) -> tuple[ModelFactory, Path, str]:
    """The function ``PATH.py:FUNC`` or ``package.module:FUNC`` names, its file and the
    file's SHA-256. With ``sha256``, the file is read once and run only if it has that
    digest (a file named by a run directory; see :mod:`cnnlab.models.trust`)."""
    where, _, name = reference.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"model {reference!r}: write PATH.py:FUNCTION or package.module:FUNCTION")
    try:
        if where.endswith(".py") or sha256 is not None:
            path = Path(where).resolve()
            module, digest = run_file(path, sha256)
        else:
            module = importlib.import_module(where)
            path = Path(module.__file__ or where)
            digest = file_digest(path)
    except ConfigError:
        raise
    except Exception as e:  # the user's code: any error it raises on import
        raise ConfigError(
            f"model {reference!r}: importing {where} failed: {type(e).__name__}: {e}"
        ) from e
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"model {reference!r}: {path} defines no function {name!r}")
    return factory, path, digest


# Model files run in this process, by (path, SHA-256): a file is run once per content.
_RUN: dict[tuple[Path, str], ModuleType] = {}


def run_file(path: Path, sha256: str | None = None) -> tuple[ModuleType, str]:
    """The module the Python file ``path`` defines, run from the bytes read here (so the
    code that runs is the code whose digest was checked), and their SHA-256."""
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found; give the path of the Python file that defines the model"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    digest = hashlib.sha256(source).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ConfigError(f"{path} changed as it was read (SHA-256 {digest[:12]}...); try again")
    if (path, digest) not in _RUN:
        module = ModuleType(f"cnnlab_model_{digest[:16]}")
        module.__file__ = str(path)
        sys.modules[module.__name__] = module  # dataclasses and pickling look modules up
        try:
            exec(compile(source, str(path), "exec"), module.__dict__)
        except BaseException:
            del sys.modules[module.__name__]
            raise
        _RUN[path, digest] = module
    return _RUN[path, digest], digest


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
