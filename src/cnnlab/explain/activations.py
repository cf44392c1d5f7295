"""Feature maps: what a layer outputs for an input, which channels respond, which never do.

A channel is *silent* when its activation is ``<= threshold`` (default 0.0) at every position of every
example in the batch. After a ReLU-like layer that is exactly "this channel passes nothing on for
these inputs"; measured on a convolution that feeds a ReLU directly it is "the ReLU would silence
it". With batch norm between the two, measure on the activation layers instead (see
:func:`silent_share_by_depth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.explain.hooks import as_input, capture, explain_mode
from cnnlab.explain.layers import activation_layers, conv_layers


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of ``layer`` for input ``x``: a detached (N, C, *spatial) tensor.

    Runs in eval mode under ``torch.no_grad`` and restores the model's previous modes afterwards.
    """
    return collect_activations(model, x, [layer])[layer]


def collect_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of several layers from ONE forward pass, by name (detached)."""
    with explain_mode(model), capture(model, layers) as cap, torch.no_grad():
        model(as_input(model, x))
        return {name: cap[name].detach() for name in layers}


def channel_means(maps: torch.Tensor) -> torch.Tensor:
    """(C,) mean activation of each channel over the batch and all positions."""
    return maps.transpose(0, 1).reshape(maps.shape[1], -1).float().mean(dim=1)


def channel_order(maps: torch.Tensor) -> torch.Tensor:
    """Channel indices sorted by mean activation, strongest first (ties keep index order)."""
    return torch.sort(channel_means(maps), descending=True, stable=True).indices


def silent_channels(maps: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """(C,) bool: True for channels whose activation is ``<= threshold`` everywhere in the batch."""
    peak = maps.transpose(0, 1).reshape(maps.shape[1], -1).amax(dim=1)
    return peak <= threshold


def silent_share(maps: torch.Tensor, threshold: float = 0.0) -> float:
    """Fraction of channels that are silent (see :func:`silent_channels`)."""
    return silent_channels(maps, threshold).float().mean().item()


@dataclass(frozen=True)
class SilentRow:
    """Silent channels of one layer: its name, depth (0 = shallowest), count and share."""

    layer: str
    depth: int
    silent: int
    channels: int

    @property
    def share(self) -> float:
        return self.silent / self.channels if self.channels else 0.0


def silent_share_by_depth(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str] | None = None,
    threshold: float = 0.0,
) -> list[SilentRow]:
    """The silent-channel share of each layer, shallowest first, from one forward pass.

    ``layers=None`` measures the ReLU-like activation modules when the model has them (the place
    where "never positive" really means "passes nothing on") and the convolutions otherwise.
    Layers whose output has no channel axis with positions (e.g. a linear head) are skipped.
    """
    if layers is None:
        layers = activation_layers(model) or conv_layers(model)
    maps = collect_activations(model, x, layers)
    rows = []
    for name in layers:
        act = maps[name]
        if act.dim() < 3:
            continue
        silent = int(silent_channels(act, threshold).sum())
        rows.append(SilentRow(name, len(rows), silent, act.shape[1]))
    return rows
