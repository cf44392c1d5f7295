"""Hooks that are always released, and a mode guard that leaves the caller's model as it was.

Everything in ``cnnlab.explain`` goes through the two context managers here:

* :func:`capture` registers forward hooks on layers named by dotted path and removes them in a
  ``finally`` block, so they are gone after success *and* after an exception (pytorch-grad-cam keeps
  them until ``__exit__`` and swallows errors there; we do neither).
* :func:`explain_mode` runs the model in eval mode (dropout off, batch norm on its running statistics,
  so batch rows never mix) and puts back every submodule's previous ``training`` flag afterwards.
  It never moves the model, never touches ``requires_grad`` and never writes ``.grad``: gradients are
  taken with ``torch.autograd.grad`` with respect to activations or inputs only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from cnnlab.errors import CnnlabError, unknown


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name`` ("blocks.3.conv2"); CnnlabError with did-you-mean if absent."""
    modules = dict(model.named_modules())
    modules.pop("", None)  # the root is the model itself, not a layer
    if name not in modules:
        raise unknown("layer", name, modules, "`cnnlab explain RUN --list-layers`")
    return modules[name]


@contextmanager
def explain_mode(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (``train=False``) and restore each submodule's own flag afterwards.

    The flags are saved per submodule, not just the root's, because a caller may deliberately keep
    some parts (a frozen backbone's batch norm, say) in a different mode from the rest.
    """
    saved = [(module, module.training) for module in model.modules()]
    try:
        model.train(train)
        yield model
    finally:
        for module, flag in saved:
            module.training = flag


class Capture:
    """The outputs seen by forward hooks, by layer name (the last call wins for a reused module)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.outputs: dict[str, object] = {}
        self.calls: dict[str, int] = dict.fromkeys(self.names, 0)

    def __getitem__(self, name: str) -> torch.Tensor:
        """The tensor output of layer ``name``; CnnlabError if it did not run or returned no tensor."""
        if name not in self.outputs:
            raise CnnlabError(
                f"layer {name!r} was not called by the model's forward pass; pick a layer that is used "
                "(see `cnnlab explain RUN --list-layers` or cnnlab.explain.list_layers(model, x))"
            )
        out = self.outputs[name]
        if not isinstance(out, torch.Tensor):
            raise CnnlabError(
                f"layer {name!r} returns {type(out).__name__}, not a tensor; pick one of its submodules"
            )
        return out


@contextmanager
def capture(model: nn.Module, names: str | Sequence[str]) -> Iterator[Capture]:
    """Record the forward outputs of the named layers while the block runs; hooks removed on exit.

    Outputs are kept attached to the autograd graph so that a caller can differentiate with respect
    to them (Grad-CAM); detach them yourself if you only want values.
    """
    names = [names] if isinstance(names, str) else list(names)
    layers = {name: get_layer(model, name) for name in names}  # fail before registering anything
    cap = Capture(names)
    handles = []
    try:
        for name, layer in layers.items():
            handles.append(layer.register_forward_hook(_recorder(cap, name)))
        yield cap
    finally:
        for handle in handles:
            handle.remove()


def _recorder(cap: Capture, name: str):  # type: ignore[no-untyped-def]
    def hook(module: nn.Module, inputs: object, output: object) -> None:
        cap.outputs[name] = output
        cap.calls[name] += 1

    return hook


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 if it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def as_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as a fresh float tensor on the model's device, checked against the model's input layout.

    A copy, so that it can require grad even if the caller made it under ``torch.inference_mode``,
    and so that the caller's tensor is never changed.
    """
    if not isinstance(x, torch.Tensor):
        raise CnnlabError(f"expected a torch.Tensor input, got {type(x).__name__}")
    check_input(model, x)
    return x.detach().to(device=model_device(model), dtype=model_dtype(model)).clone()


def first_conv(model: nn.Module) -> nn.modules.conv._ConvNd | None:
    """The first convolution in registration order (how the input layout is inferred)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module
    return None


def input_layout(model: nn.Module) -> tuple[int | None, int | None]:
    """(channels, spatial dims) the model expects: from ``model.in_channels`` or its first convolution."""
    conv = first_conv(model)
    channels = getattr(model, "in_channels", None)
    if not isinstance(channels, int):
        channels = conv.in_channels if conv is not None else None
    dims = len(conv.kernel_size) if conv is not None else None
    return channels, dims


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """CnnlabError if ``x`` has the wrong rank or channel count for ``model`` (when they can be known)."""
    channels, dims = input_layout(model)
    if dims is not None and x.dim() != dims + 2:
        layout = {1: "(N, C, T)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[dims]
        raise CnnlabError(
            f"input has shape {tuple(x.shape)} but the model expects a batch shaped {layout}; "
            "add the batch dimension with x.unsqueeze(0) or reshape the input"
        )
    if channels is not None and x.dim() >= 2 and x.shape[1] != channels:
        raise CnnlabError(
            f"input has {x.shape[1]} channel(s) but the model expects {channels}; "
            f"convert the images to {channels} channel(s) (e.g. load_images(..., in_channels={channels}))"
        )


class _Reached(Exception):
    """Raised by a hook to stop the forward pass once the wanted layer has produced its output."""

    def __init__(self, output: object) -> None:
        super().__init__("layer reached")
        self.output = output


def forward_to(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """Run ``model(x)`` only as far as layer ``name`` and return that layer's output (graph kept).

    Filter visualisation never needs the layers after the one it maximises, so the hook stops
    the forward pass there by raising; the hook is removed whatever happens.
    """
    layer = get_layer(model, name)

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        raise _Reached(output)

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    except _Reached as reached:
        out = reached.output
        if not isinstance(out, torch.Tensor):
            raise CnnlabError(f"layer {name!r} returns {type(out).__name__}, not a tensor; pick one of its submodules") from None
        return out
    finally:
        handle.remove()
    raise CnnlabError(f"layer {name!r} was not called by the model's forward pass; pick a layer that is used")
