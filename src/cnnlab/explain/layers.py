"""Layers by dotted name: list them (with output shapes for an example input) and pick kinds of layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.explain.hooks import as_input, capture, explain_mode

# Activations after which "<= 0 everywhere" means a channel passes nothing on.
RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)


@dataclass(frozen=True)
class LayerInfo:
    """One named submodule: its dotted name, class name, and output shape (None if unknown/not a tensor)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None = None

    @property
    def spatial(self) -> bool:
        """True when the output has at least one spatial/time axis after (N, C): usable for CAMs."""
        return self.output_shape is not None and len(self.output_shape) >= 3


def list_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every named submodule in registration order; with an example input ``x``, its output shape too.

    The forward pass for the shapes runs in eval mode under ``torch.no_grad`` and the model's
    previous modes are restored afterwards. Layers that the forward pass does not call keep
    ``output_shape=None``.
    """
    names = [(name, type(module).__name__) for name, module in model.named_modules() if name]
    if x is None:
        return [LayerInfo(name, kind) for name, kind in names]
    with explain_mode(model), capture(model, [n for n, _ in names]) as cap, torch.no_grad():
        model(as_input(model, x))
    infos = []
    for name, kind in names:
        out = cap.outputs.get(name)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        infos.append(LayerInfo(name, kind, shape))
    return infos


def spatial_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of layers whose output keeps spatial (or time) axes for input ``x``: the CAM candidates."""
    return [info.name for info in list_layers(model, x) if info.spatial]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the convolution layers (1D, 2D, 3D, transposed included), shallowest first."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]


def activation_layers(model: nn.Module) -> list[str]:
    """Names of ReLU-like activation modules, shallowest first (empty if the model uses F.relu)."""
    return [name for name, m in model.named_modules() if isinstance(m, RELU_LIKE)]


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The deepest layer with spatial output: the usual Grad-CAM choice (coarse but most semantic)."""
    convs = set(conv_layers(model))
    infos = [info for info in list_layers(model, x) if info.spatial]
    # Prefer a whole block or activation over a bare convolution; skip the root-level containers
    # that wrap everything (their output is the model's own).
    candidates = [i.name for i in infos if i.name not in convs] or [i.name for i in infos]
    if not candidates:
        from cnnlab.errors import CnnlabError

        raise CnnlabError("the model has no layer with spatial output; CAMs need a convolutional layer")
    return candidates[-1]
