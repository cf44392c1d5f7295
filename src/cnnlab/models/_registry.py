"""The model registry: builders registered as plain functions, looked up by name (timm's pattern).

A builder is ``def name(num_classes=..., in_channels=..., **kwargs) -> nn.Module``; variants are data
(keyword defaults), not subclasses. ``create_model`` drops ``None`` keyword arguments so that CLI
options left unset fall back to the builder's defaults.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError, unknown

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_TAGS: dict[str, tuple[str, ...]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None,
                   tags: tuple[str, ...] = ()) -> Any:
    """Decorator: register ``fn`` under its own name (or ``name``). Re-registering a name is an error."""

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _BUILDERS and _BUILDERS[key] is not f:
            raise ValueError(f"model {key!r} is registered twice")
        _BUILDERS[key] = f
        _TAGS[key] = tags
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style pattern such as ``'resnet*'``."""
    _load_builtin_models()
    names = sorted(_BUILDERS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_tags(name: str) -> tuple[str, ...]:
    """Free-form tags of a registered model (for example ``('classify', 'images32')``)."""
    _load_builtin_models()
    return _TAGS[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` keyword arguments are dropped (builder defaults apply)."""
    _load_builtin_models()
    if name not in _BUILDERS:
        raise unknown("model", name, _BUILDERS)
    for key in ("num_classes", "in_channels"):  # else torch fails later on a negative tensor dimension
        value = kwargs.get(key)
        if value is not None and not _positive_int(value):
            raise CnnlabError(f"{key}={value!r} for model {name!r} must be a positive integer")
    return _BUILDERS[name](**{k: v for k, v in kwargs.items() if v is not None})


def _positive_int(value: Any) -> bool:
    """True for 1, 2, ... (NumPy integers too), False for 0, -1, 2.5, True, "3"."""
    try:
        return not isinstance(value, bool) and operator.index(value) >= 1
    except TypeError:
        return False


def _load_builtin_models() -> None:
    # Importing the package registers every built-in family (each module decorates its builders).
    import cnnlab.models  # noqa: F401
