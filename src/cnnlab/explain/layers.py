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


def last_spatial_layer(model: nn.Module, x: torch.Tensor, min_size: int = 4) -> str:
    """The default CAM layer: the last layer (in execution order) at the coarsest resolution >= ``min_size``.

    Deep layers are the most class-specific but coarse; a 1x1 map (a 32x32 image at the end of a
    5-stage network) says nothing about *where*, so the search stops at the smallest maps whose
    sides are all >= ``min_size``. Among the layers at that resolution it takes the one that
    finishes last, which is the whole block rather than one of its parts. Layers whose output is
    larger than their input (padding, upsampling) are skipped: a padded map is not a feature map.
    """
    shapes = _spatial_shapes_in_order(model, x)
    if not shapes:
        from cnnlab.errors import CnnlabError

        raise CnnlabError("the model has no layer with spatial output; CAMs need a convolutional layer")
    sizes = {min(shape) for _, shape in shapes}
    fine = [s for s in sizes if s >= min_size]
    target = min(fine) if fine else max(sizes)
    return [n for n, shape in shapes if min(shape) == target][-1]


def _spatial_shapes_in_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output spatial shape) of every layer that keeps or shrinks its input's spatial size, in
    the order the layers finish."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    last: list[object] = [None]  # the previous recorded output

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor) or output.dim() < 3:
                return
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if first is not None and first.dim() == output.dim() and any(
                o > i for o, i in zip(output.shape[2:], first.shape[2:], strict=True)
            ):
                return  # grows the map: padding or upsampling
            if output is last[0]:
                # A block passing on its last child's output: name the block ("stages.3.main.1", not its
                # ".conv.pointwise"), but not a top-level container that wraps the whole trunk.
                if "." in name:
                    seen[-1] = (name, seen[-1][1])
                return
            last[0] = output
            seen.append((name, tuple(output.shape[2:])))

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(recorder(name)))
        with explain_mode(model), torch.no_grad():
            model(as_input(model, x))
    finally:
        for handle in handles:
            handle.remove()
    return seen
