"""Keras/TensorFlow ``padding="same"`` for any stride, kernel and dilation, plus a 'same' max pool.

PyTorch's ``padding="same"`` refuses strides other than 1, and symmetric padding cannot reproduce
TensorFlow when the total is odd: TF puts the extra row/column on the right/bottom. We compute the
pads from the input size at run time with ``cnnlab.ops.shape.same_padding`` (the one
definition of the rule; static shapes, so torch.compile sees plain ints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.ops.shape import same_padding


def native_same_padding(kernel: int, stride: int, dilation: int) -> int | None:
    """The symmetric padding a torch conv can apply itself when 'same' needs no input-size knowledge.

    That holds for stride 1 with an even total ``(kernel-1)*dilation``; otherwise None (use SamePad).
    """
    total = (kernel - 1) * dilation
    return total // 2 if stride == 1 and total % 2 == 0 else None


class SamePad(nn.Module):
    """Pad the last ``dims`` axes the TF 'same' way for a given kernel, stride and dilation."""

    def __init__(self, kernel_size: int, stride: int = 1, dilation: int = 1, *, dims: int = 2,
                 value: float = 0.0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.dims, self.value = dims, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        # F.pad lists pads from the last axis backwards: (W_before, W_after, H_before, H_after).
        for size in reversed(x.shape[-self.dims:]):
            pads.extend(same_padding(int(size), self.kernel_size, self.stride, self.dilation))
        if not any(pads):
            return x
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


class MaxPoolSame(nn.Sequential):
    """Keras ``MaxPooling(pool, strides, padding="same")``: pads with -inf (ignored by max), TF-aligned."""

    def __init__(self, kernel_size: int = 3, stride: int = 2, *, dims: int = 2) -> None:
        pool = nn.MaxPool2d(kernel_size, stride) if dims == 2 else nn.MaxPool1d(kernel_size, stride)
        super().__init__()
        self.pad = SamePad(kernel_size, stride, dims=dims, value=float("-inf"))
        self.pool = pool
