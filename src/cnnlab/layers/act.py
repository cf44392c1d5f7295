"""Activation modules by name, so blocks and models take ``act="relu"`` rather than classes."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import unknown

_ACTS = {
    "relu": lambda: nn.ReLU(inplace=False),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "identity": nn.Identity,
}


def make_act(name: str | None) -> nn.Module:
    """A fresh activation module for ``name`` (``None`` or ``'identity'`` gives nn.Identity)."""
    if name is None:
        return nn.Identity()
    if name not in _ACTS:
        raise unknown("activation", name, _ACTS)
    return _ACTS[name]()
