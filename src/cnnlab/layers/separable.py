"""Depthwise-separable convolution: one spatial filter per input channel, then a 1x1 mixing conv.

Keras ``SeparableConv2D`` semantics: the stride and dilation apply to the depthwise step, the optional
bias belongs to the pointwise step, and ``padding="same"`` follows TF (asymmetric when needed).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.kernels import depthwise
from cnnlab.layers.naming import check_channels
from cnnlab.layers.padding import SamePad, native_same_padding


def conv_cls(dims: int) -> type[nn.Conv1d] | type[nn.Conv2d]:
    """nn.Conv1d or nn.Conv2d for ``dims`` 1 or 2."""
    if dims not in (1, 2):
        raise CnnlabError(f"dims must be 1 or 2, got {dims}: use dims=2 for images, dims=1 for signals")
    return nn.Conv2d if dims == 2 else nn.Conv1d


def resolve_padding(padding: str | int, kernel_size: int, stride: int, dilation: int,
                    dims: int) -> tuple[int, nn.Module | None]:
    """(padding the conv applies itself, a SamePad module to run first or None) for ``padding``.

    ``'same'`` uses the conv's own symmetric padding when that is exact, else an explicit SamePad;
    ``'valid'`` is 0; an int is passed through (PyTorch's symmetric padding).
    """
    if padding == "valid":
        return 0, None
    if padding == "same":
        native = native_same_padding(kernel_size, stride, dilation)
        if native is not None:
            return native, None
        return 0, SamePad(kernel_size, stride, dilation, dims=dims)
    if isinstance(padding, int):
        return padding, None
    raise CnnlabError(f"padding must be 'same', 'valid' or an int, got {padding!r}")


class SeparableConv(nn.Module):
    """Depthwise conv (``groups=in_channels``) followed by a pointwise 1x1 conv.

    Parameters: ``k**dims * in * depth_multiplier`` (depthwise, no bias) plus
    ``in * depth_multiplier * out`` (+ ``out`` with ``bias=True``), exactly as Keras counts them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: str | int = "same", dilation: int = 1, *, bias: bool = False,
                 depth_multiplier: int = 1, dims: int = 2) -> None:
        super().__init__()
        conv = conv_cls(dims)
        self.in_channels, self.out_channels = in_channels, out_channels
        native, pad = resolve_padding(padding, kernel_size, stride, dilation, dims)
        self.pad = pad if pad is not None else nn.Identity()
        mid = in_channels * depth_multiplier
        self.depthwise = conv(in_channels, mid, kernel_size, stride, native, dilation,
                              groups=in_channels, bias=False)
        self.pointwise = conv(mid, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(self, x, self.in_channels)
        x = self.pad(x)
        # CPU bf16 training: the depthwise weight gradient from cnnlab's C kernel, which beats oneDNN's
        # (benchmarks/NOTES-speed.md, attempt 18); every other case runs the stock nn.Conv2d.
        if depthwise.use_kernel(self.depthwise, x):
            return self.pointwise(depthwise.depthwise_conv3x3(x, self.depthwise.weight))
        return self.pointwise(self.depthwise(x))
