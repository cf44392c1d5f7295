"""Exact pooling in NumPy float64: max, min and average over sliding windows, per channel.

Padding semantics (chosen to match PyTorch's defaults so the ops double as oracles):

- ``max`` pads with -inf and ``min`` with +inf, so a padded cell never wins.
- ``avg`` pads with zeros and divides by the full window size, padded cells included
  (``count_include_pad=True``, PyTorch's default for avg_pool2d). Pass ``count_include_pad=False``
  to divide by the number of real input cells in each window instead.

The stride defaults to the window size. Like PyTorch, the last partial window is dropped
(floor, no ceil mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError, unknown
from cnnlab.ops._layout import batch_input, to_2d, unbatch
from cnnlab.ops.conv import pad, windows
from cnnlab.ops.shape import Pads, as_pads, as_tuple, conv_output_size

MODES = ("max", "min", "avg")


def _pool_pads(padding: Any, ndim: int) -> Pads:
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return ((0, 0),) * ndim
        raise CnnlabError(f"padding {padding!r} is not defined for pooling; give an integer or 'valid'")
    return as_pads(padding, ndim)


def pool2d_nchw(x: np.ndarray, size: tuple[int, int], stride: tuple[int, int], pads: Pads,
                mode: str, dilation: tuple[int, int] = (1, 1), count_include_pad: bool = True) -> np.ndarray:
    """The core on validated arrays: x (N, C, H, W) -> (N, C, H', W')."""
    if mode not in MODES:
        raise unknown("pooling mode", mode, MODES)
    out = tuple(conv_output_size(x.shape[2 + i], size[i], stride[i], pads[i], dilation[i],
                                 axis=("input height", "input width")[i]) for i in range(2))
    for i in range(2):
        half = (dilation[i] * (size[i] - 1) + 1) // 2
        if max(pads[i]) > half:
            # PyTorch's rule too: with more padding a window could hold only padding (a max of -inf)
            raise CnnlabError(f"pooling padding {max(pads[i])} is more than half the window "
                              f"({dilation[i] * (size[i] - 1) + 1} cells); use padding <= {half}")
    fill = {"max": -np.inf, "min": np.inf, "avg": 0.0}[mode]
    cols = windows(pad(x, pads, fill), size, stride, dilation, out)  # (N, C, kh, kw, H', W')
    if mode == "max":
        return cols.max(axis=(2, 3))
    if mode == "min":
        return cols.min(axis=(2, 3))
    if count_include_pad:
        return cols.sum(axis=(2, 3)) / (size[0] * size[1])
    real = windows(pad(np.ones_like(x[:1, :1]), pads), size, stride, dilation, out).sum(axis=(2, 3))
    return cols.sum(axis=(2, 3)) / real


def pool2d(x: Any, size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
           padding: int | tuple | str = 0, mode: str = "max", dilation: int | tuple[int, int] = 1,
           count_include_pad: bool = True) -> np.ndarray:
    """2-D pooling of (H, W), (C, H, W) or (N, C, H, W); ``mode`` is 'max', 'min' or 'avg'."""
    x4, had_batch, had_channel = batch_input(x, 2)
    k = as_tuple(size, 2, "size", 1)
    s = k if stride is None else as_tuple(stride, 2, "stride", 1)
    y = pool2d_nchw(x4, k, s, _pool_pads(padding, 2), str(mode).lower(), as_tuple(dilation, 2, "dilation", 1),
                    count_include_pad)
    return unbatch(y, had_batch, had_channel)


def pool1d(x: Any, size: int | tuple[int], stride: int | tuple[int] | None = None,
           padding: int | tuple | str = 0, mode: str = "max", dilation: int | tuple[int] = 1,
           count_include_pad: bool = True) -> np.ndarray:
    """1-D pooling of (L), (C, L) or (N, C, L); ``mode`` is 'max', 'min' or 'avg'."""
    x3, had_batch, had_channel = batch_input(x, 1)
    k = as_tuple(size, 1, "size", 1)
    s = k if stride is None else as_tuple(stride, 1, "stride", 1)
    pads = _pool_pads(padding, 1)
    y = pool2d_nchw(to_2d(x3), (1, k[0]), (1, s[0]), ((0, 0), pads[0]), str(mode).lower(),
                    (1, as_tuple(dilation, 1, "dilation", 1)[0]), count_include_pad)
    return unbatch(y[:, :, 0], had_batch, had_channel)
