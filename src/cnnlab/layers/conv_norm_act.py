"""Conv + norm + activation in a chosen order: the one block most CNNs are made of.

The order is data (``"conv-bn-relu"``, the pre-activation ``"bn-relu-conv"`` of the lecture, Keras
Xception's ``"relu-conv-bn"``), so the same class serves post- and pre-activation designs and a
module's children keep meaningful names (``conv``, ``bn``, ``act``) for hooks and summaries.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.kernels import bn_relu
from cnnlab.layers.act import make_act
from cnnlab.layers.naming import check_channels
from cnnlab.layers.separable import SeparableConv, conv_cls, resolve_padding

_TOKENS = {"conv": "conv", "bn": "bn", "norm": "bn", "relu": "act", "act": "act"}


def parse_order(order: str) -> list[str]:
    """``'bn-relu-conv'`` -> ``['bn', 'act', 'conv']``; 'conv' is required, each part at most once."""
    parts = [p.strip().lower() for p in order.split("-")]
    bad = [p for p in parts if p not in _TOKENS]
    roles = [_TOKENS[p] for p in parts if p in _TOKENS]
    if bad or "conv" not in roles or len(set(roles)) != len(roles):
        raise CnnlabError(
            f"block order {order!r} is not valid: use parts conv, bn, relu (or act) joined by '-', "
            "each at most once and conv included, e.g. 'conv-bn-relu' or 'bn-relu-conv'"
        )
    return roles


class ConvNormAct(nn.Sequential):
    """A (separable) conv with optional batch norm and activation, applied in ``order``.

    ``bias`` defaults to True only when there is no norm (a BN right after the conv cancels it).
    ``norm=None`` or ``act=None`` drop those parts even if the order names them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: str | int = "same", dilation: int = 1, groups: int = 1, *, dims: int = 2,
                 order: str = "conv-bn-relu", norm: str | None = "bn", act: str | None = "relu",
                 bias: bool | None = None, separable: bool = False) -> None:
        roles = parse_order(order)
        if norm not in (None, "bn"):
            raise CnnlabError(f"norm must be 'bn' or None, got {norm!r}")
        bias = norm is None if bias is None else bias
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels  # channels flowing at this point of the order (BN before conv sees input)
        for role in roles:
            if role == "conv":
                if separable:
                    parts["conv"] = SeparableConv(in_channels, out_channels, kernel_size, stride, padding,
                                                  dilation, bias=bias, dims=dims)
                else:
                    native, pad = resolve_padding(padding, kernel_size, stride, dilation, dims)
                    if pad is not None:
                        parts["pad"] = pad
                    parts["conv"] = conv_cls(dims)(in_channels, out_channels, kernel_size, stride, native,
                                                   dilation, groups, bias=bias)
                channels = out_channels
            elif role == "bn" and norm is not None:
                parts["bn"] = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
            elif role == "act" and act is not None:
                parts["act"] = make_act(act)
        super().__init__(parts)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(self, x, self.in_channels)
        if not (self.training and x.dtype == torch.bfloat16 and x.device.type == "cpu"):
            return super().forward(x)
        # CPU bf16 training: a BN directly followed by its ReLU runs as one fused kernel pair
        # (cnnlab.kernels.bn_relu, ~5 fewer passes over the activation); anything it does not
        # cover (hooks, other norms, no compiler) runs module by module as nn.Sequential would.
        names = list(self._modules)
        i = 0
        while i < len(names):
            module = self._modules[names[i]]
            if (names[i] == "bn" and i + 1 < len(names) and names[i + 1] == "act"
                    and bn_relu.usable(x, module, self._modules["act"])):
                x = bn_relu.bn_relu_train(x, module)
                i += 2
                continue
            x = module(x)
            i += 1
        return x


class SeparableBlock(ConvNormAct):
    """The pre-activation separable block, with its order an explicit choice.

    The lecture writes ``order="bn-relu-conv"`` (BN -> ReLU -> SeparableConv); Keras's Xception uses
    ``"relu-conv-bn"``. Requiring the argument keeps the two from being mixed up silently.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 order: str, padding: str | int = "same", dilation: int = 1, dims: int = 2,
                 act: str | None = "relu", bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, dims=dims,
                         order=order, act=act, bias=bias, separable=True)
