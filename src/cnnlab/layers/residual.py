"""Residual connections: a main branch and a shortcut, merged by addition or by concatenation.

``Residual(main, in_channels, out_channels, stride)`` describes what the main branch does to the
shape, so the shortcut can be made to match at build time: with ``project=True`` a 1x1 conv (strided
where the main branch downsamples) is inserted when the shapes differ. Without it, a mismatch is
reported at the first forward pass by the ``merge`` child, naming the block, both shapes and the fix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers.act import make_act
from cnnlab.layers.conv_norm_act import ConvNormAct
from cnnlab.layers.naming import name_of, sample_shape


def _stride_between(big: tuple[int, ...], small: tuple[int, ...]) -> int:
    """The stride that takes spatial shape ``big`` to ``small`` with 'same' padding (ceil division)."""
    return max(math.ceil(b / s) for b, s in zip(big, small, strict=True)) if small else 1


def _mismatch(merge: nn.Module, shortcut: torch.Tensor, main: torch.Tensor, what: str,
              channels: int | None) -> CnnlabError:
    """The error for shapes a merge cannot reconcile: names the block, both shapes and the fix."""
    sc, mn = sample_shape(shortcut), sample_shape(main)
    head = f"block {name_of(merge)!r}: shortcut is {sc}, main branch {mn}"
    if len(sc) != len(mn):
        return CnnlabError(f"{head}: the branches have different ranks; both must be (C, *spatial)")
    if any(m > s for m, s in zip(mn[1:], sc[1:], strict=True)):
        return CnnlabError(f"{head}: the main branch is larger than the shortcut, which a projection "
                           "cannot fix; check the main branch's padding and strides")
    stride = _stride_between(sc[1:], mn[1:])
    filters = mn[0] if channels is None else sc[0]
    return CnnlabError(f"{head}: {what}; project the shortcut with a 1x1 conv, stride {stride}, "
                       f"{filters} filters (set project=True)")


class Add(nn.Module):
    """Elementwise sum of main branch and shortcut; they must have the same shape."""

    def forward(self, main: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if main.shape[1:] != shortcut.shape[1:]:
            raise _mismatch(self, shortcut, main, "addition needs equal shapes", None)
        return main + shortcut


class Concat(nn.Module):
    """Channel concatenation ``[main, shortcut]``; the spatial sizes must agree."""

    def forward(self, main: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if main.dim() != shortcut.dim() or main.shape[2:] != shortcut.shape[2:]:
            raise _mismatch(self, shortcut, main, "concatenation needs equal spatial sizes",
                            shortcut.shape[1])
        return torch.cat([main, shortcut], dim=1)


class PadShortcut(nn.Module):
    """He et al.'s CIFAR 'option A' shortcut: subsample by ``stride`` and zero-pad new channels.

    Parameter-free, which is why the CIFAR ResNets count 0.27M rather than slightly more.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[..., :: self.stride, :: self.stride] if x.dim() == 4 else x[..., :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra <= 0:
            return x
        # Pad the channel axis (dim 1): F.pad lists pairs from the last axis backwards.
        spatial = [0, 0] * (x.dim() - 2)
        return F.pad(x, [*spatial, extra // 2, extra - extra // 2])


class Residual(nn.Module):
    """``merge(main(x), shortcut(x))`` then an optional activation.

    Args:
        main: the main branch.
        in_channels, out_channels, stride: what ``main`` does to the input's shape (for ``concat``,
            ``out_channels`` is the main branch's; the block outputs main + shortcut channels).
        merge: ``"add"`` or ``"concat"``.
        project: insert a 1x1 conv on the shortcut when the shapes would otherwise differ.
        shortcut: an explicit shortcut module (overrides ``project``).
        projection_norm, projection_bias: BN after the projection (ResNet, Xception) or a bare conv.
        act: activation after the merge (post-activation ResNets), None for none.
    """

    def __init__(self, main: nn.Module, in_channels: int, out_channels: int, stride: int = 1, *,
                 merge: str = "add", project: bool = False, shortcut: nn.Module | None = None,
                 projection_norm: str | None = "bn", projection_bias: bool = False,
                 act: str | None = None, dims: int = 2) -> None:
        super().__init__()
        if merge not in ("add", "concat"):
            raise CnnlabError(f"merge must be 'add' or 'concat', got {merge!r}")
        self.main = main
        self.in_channels, self.stride = in_channels, stride
        self.out_channels = out_channels + (in_channels if merge == "concat" else 0)
        if shortcut is None:
            # concat keeps the shortcut's channels and only needs the spatial size fixed.
            target = out_channels if merge == "add" else in_channels
            if project and (target != in_channels or stride != 1):
                shortcut = ConvNormAct(in_channels, target, 1, stride, padding=0, dims=dims, order="conv-bn",
                                       norm=projection_norm, act=None, bias=projection_bias)
            else:
                shortcut = nn.Identity()
        self.shortcut = shortcut
        self.merge = Add() if merge == "add" else Concat()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.merge(self.main(x), self.shortcut(x)))
