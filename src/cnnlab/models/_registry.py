"""The model registry: builders registered as plain functions, looked up by name (timm's pattern).

A builder is ``def name(num_classes=..., in_channels=..., **kwargs) -> nn.Module``; variants are data
(keyword defaults), not subclasses. ``create_model`` drops ``None`` keyword arguments so that CLI
options left unset fall back to the builder's defaults.
"""

from __future__ import annotations

import contextlib
import fnmatch
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, unknown


class Backbone(nn.Module):
    """The contract registered models keep (timm's): ``forward(x) == forward_head(forward_features(x))``.
    Explain, localisation and feature extraction call the two halves on their own. A subclass defines
    ``forward_features``, and a ``head`` module or its own ``forward_head``."""

    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

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
        raise unknown("model", name, _BUILDERS, "`cnnlab models list`")
    for key in ("num_classes", "in_channels"):  # else torch fails later on a negative tensor dimension
        value = kwargs.get(key)
        if value is not None and not _positive_int(value):
            raise CnnlabError(f"{key}={value!r} for model {name!r} must be a positive integer")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    _check_types(name, _BUILDERS[name], kwargs)
    try:
        return _BUILDERS[name](**kwargs)
    except RuntimeError as exc:  # torch refusing a layer the values describe (e.g. widths=[-4])
        raise CnnlabError(f"model {name!r} cannot be built with {kwargs}: {str(exc).splitlines()[0]}; "
                          "check the model keywords (--model-arg / --set)") from None


def _check_types(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """A string (or a number) where the builder's default is a bool, or a string where it is a number,
    is a user error: 'False' is a truthy string, and '3' a size nobody meant."""
    import inspect

    params = dict(inspect.signature(builder).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # forwarded to the model class
        import typing

        with contextlib.suppress(NameError, TypeError):  # an unresolvable annotation only skips the check
            cls = typing.get_type_hints(builder).get("return")
            if isinstance(cls, type):
                params = {**inspect.signature(cls.__init__).parameters, **params}
    for key, value in kwargs.items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if isinstance(default, bool) and not isinstance(value, bool):
            raise CnnlabError(f"{key}={value!r} for model {name!r} must be true or false (a bool), "
                              f"e.g. {key}=false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            raise CnnlabError(f"{key}={value!r} for model {name!r} must be a number like its default {default!r}")


def _positive_int(value: Any) -> bool:
    """True for 1, 2, ... (NumPy integers too), False for 0, -1, 2.5, True, "3"."""
    try:
        return not isinstance(value, bool) and operator.index(value) >= 1
    except TypeError:
        return False


def _load_builtin_models() -> None:
    # Importing the package registers every built-in family (each module decorates its builders).
    import cnnlab.models  # noqa: F401
