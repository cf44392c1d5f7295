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

from cnnlab.kernels import maxpool as maxpool_kernel
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


def _ceil_pool_size(n: int, k: int, s: int, pad: int) -> int:
    """PyTorch's pooling output size with ``ceil_mode=True`` (aten's pooling_output_shape, dilation 1)."""
    out = (n + 2 * pad - k + s - 1) // s + 1
    return out - 1 if (out - 1) * s >= n + pad else out


class MaxPoolSame(nn.Module):
    """Keras ``MaxPooling(pool, strides, padding="same")``: TF-aligned windows, padding ignored by max.

    Why not always pad then pool: TF's pad is (P // 2, P - P // 2), so the right side gets at most
    one cell more than the left. Pooling with ``padding=P // 2`` on both sides and ``ceil_mode=True``
    gives the same window starts, hence the same maxima (the implicit padding is -inf), whenever it
    gives the same number of windows, which holds for every stride > 1 (the lecture's case) and
    many stride-1 cases; otherwise we pad explicitly. Skipping the padded copy saved its write, fill
    and backward, ~5% of a mini_xception training step at 180x180 (benchmarks/NOTES-speed.md).
    tests/test_layers.py checks values and gradients against explicit -inf padding for all small
    sizes, kernels and strides.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, *, dims: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dims = kernel_size, stride, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        sizes = [int(n) for n in x.shape[-self.dims:]]
        pads = [same_padding(n, k, s) for n in sizes]
        lefts = tuple(left for left, _ in pads)
        if self.dims == 2 and maxpool_kernel.usable(x, self, k):
            # CPU bf16 channels_last training: the hand-written kernel (TF windows: ceil(n / s) outputs
            # starting at i * s - left), ~2x faster than torch's here (NOTES-speed.md, attempt 21)
            out = tuple(-(-n // s) for n in sizes)
            return maxpool_kernel.max_pool_same(x, k, s, lefts, out)
        pool = F.max_pool2d if self.dims == 2 else F.max_pool1d
        same_windows = all(2 * left <= k and _ceil_pool_size(n, k, s, left) == -(-n // s)
                           for n, left in zip(sizes, lefts, strict=True))
        if same_windows:
            return pool(x, k, s, padding=lefts, ceil_mode=True)
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad lists the last axis first
        return pool(F.pad(x, flat, value=float("-inf")), k, s)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
