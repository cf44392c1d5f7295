"""Qualified (dotted) module names for error messages, and the shape checks that use them.

A block deep inside a model only knows itself, not where it sits. ``annotate_names(model)`` walks
``named_modules`` once, at build time, and stores each module's dotted name on it, so a failing block
can say ``block 'stages.2.merge'`` instead of a bare class name. The checks below compare static
shapes only (never tensor values), so they cost nothing under torch.compile.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError

_ATTR = "_cnnlab_name"


def annotate_names(root: nn.Module) -> nn.Module:
    """Store every submodule's dotted name on it (the root gets its class name); returns ``root``.

    Call it at the end of a model's ``__init__``; an outer model that embeds this one calls it again,
    and the outer (longer) names win because they are written last.
    """
    for name, module in root.named_modules():
        object.__setattr__(module, _ATTR, name or type(root).__name__)
    return root


def name_of(module: nn.Module) -> str:
    """The dotted name stored by :func:`annotate_names`, or the class name for a free-standing module."""
    return getattr(module, _ATTR, None) or type(module).__name__


def sample_shape(x: torch.Tensor) -> tuple[int, ...]:
    """The per-example shape ``(C, H, W)`` of a batched tensor, as plain ints for messages."""
    return tuple(int(s) for s in x.shape[1:])


def check_channels(module: nn.Module, x: torch.Tensor, expected: int) -> None:
    """Raise a CnnlabError naming ``module`` when ``x`` does not have ``expected`` channels (dim 1)."""
    if x.dim() < 2 or x.shape[1] != expected:
        raise CnnlabError(
            f"block {name_of(module)!r}: expects {expected} input channels, got input of shape "
            f"{sample_shape(x)}: feed {expected}-channel inputs or build the model with "
            f"in_channels={int(x.shape[1]) if x.dim() >= 2 else '?'}"
        )
