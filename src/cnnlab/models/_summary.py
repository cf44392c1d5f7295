"""A layer-by-layer summary of a model: every leaf layer's output shape, parameters and multiply-adds.

Computed by running one forward pass with hooks on every leaf module (hooks are always removed). On
the meta device no memory is allocated and no arithmetic is done, so even Xception at 299x299 is
instant. When a layer fails (a shape it cannot take), the rows up to that layer are kept and the
error is recorded, so the caller can show where the shapes stopped fitting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer call: dotted name, class, per-example output shape, own parameters, mult-adds."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class ModelSummary:
    """The rows in call order, the totals, and the error that stopped the pass (None when it ran through)."""

    input_size: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    output_shape: tuple[int, ...] | None = None
    error: str | None = None

    @property
    def total_macs(self) -> int:
        """Multiply-adds of one example's forward pass (convolutions and linear layers)."""
        return sum(r.macs for r in self.rows)


def _is_leaf(module: nn.Module) -> bool:
    # A module with its own parameters counts even if it has children, so no parameter is missed.
    return not any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False))


def layer_macs(module: nn.Module, inputs: Sequence[torch.Tensor], output: torch.Tensor) -> int:
    """Multiply-adds per example for convolutions (incl. transposed) and linear layers; 0 otherwise."""
    n = output.shape[0] if output.dim() > 1 else 1
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Every input cell scatters one kernel per output channel of its group.
        return inputs[0].numel() // n * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() // n * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.numel() // n * module.in_features
    return 0


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None


def summarize(model: nn.Module, input_size: Sequence[int], *, batch: int = 2) -> ModelSummary:
    """Run ``model`` once on a ``(batch, *input_size)`` tensor on the model's device and tabulate it.

    Build the model under ``torch.device("meta")`` for a free pass. On a real device the pass runs in
    eval mode under no_grad and the modules' train/eval flags are restored afterwards, so the caller's
    model (BN statistics included) is left as it was.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    summary = ModelSummary(tuple(int(s) for s in input_size))
    summary.total_params = sum(p.numel() for p in model.parameters())
    summary.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    names = {m: n for n, m in model.named_modules()}
    entered: list[nn.Module] = []
    input_shapes: dict[nn.Module, tuple[int, ...]] = {}

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        entered.append(module)
        tensor = _first_tensor(inputs)
        if tensor is not None:
            input_shapes[module] = tuple(int(s) for s in tensor.shape[1:])

    def hook(module: nn.Module, inputs: tuple, out: object) -> None:
        entered.pop()
        tensor = _first_tensor(out)
        shape = tuple(int(s) for s in tensor.shape[1:]) if tensor is not None else ()
        own = sum(p.numel() for p in module.parameters(recurse=False))
        macs = layer_macs(module, inputs, tensor) if tensor is not None else 0
        summary.rows.append(LayerRow(names[module] or type(module).__name__, type(module).__name__, shape,
                                     own, macs))

    handles = []
    modes = {m: m.training for m in model.modules()}
    try:
        for module in model.modules():
            if _is_leaf(module) and not isinstance(module, nn.Identity):  # placeholders add only noise
                handles.append(module.register_forward_pre_hook(pre_hook))
                handles.append(module.register_forward_hook(hook))
        model.eval()
        x = torch.zeros(batch, *summary.input_size, device=device)
        with torch.no_grad():
            out = _first_tensor(model(x))
        summary.output_shape = tuple(int(s) for s in out.shape[1:]) if out is not None else None
    except CnnlabError as exc:
        summary.error = str(exc)
    except RuntimeError as exc:
        # A plain torch layer failed: name it and what it got, since torch's own message does neither.
        where = f"layer {names[entered[-1]]!r} ({type(entered[-1]).__name__})" if entered else "model"
        got = input_shapes.get(entered[-1], summary.input_size) if entered else summary.input_size
        summary.error = (f"{where} cannot take an input of shape {got} per example: {str(exc).splitlines()[0]}; "
                         f"check the input size {summary.input_size} (C,H,W for 2-D models, C,T for 1-D)")
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.train(mode)
    return summary
