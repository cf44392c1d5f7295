"""Exact convolution in NumPy float64: conv2d, conv1d and the depthwise-separable conv.

Like every framework this is cross-correlation (the kernel is not flipped):

    out[n, o, i, j] = bias[o] + sum_{c in group(o), a, b} xpad[n, c, i*sh + a*dh, j*sw + b*dw] * w[o, c, a, b]

Padding adds zeros. ``padding="same"`` follows PyTorch (stride 1 only, the odd extra cell on the
right/bottom); for Keras-style 'same' with a stride use :func:`cnnlab.ops.shape.same_padding` and
pass its (left, right) pairs. Inputs (H, W), (C, H, W) or (N, C, H, W); weights (kh, kw) or
PyTorch's (C_out, C_in/groups, kh, kw). The result keeps the caller's axes: no batch axis in, none
out; no channel axis in and a bare (kh, kw) kernel, none out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.ops._layout import batch_input, batch_weight, check_bias, check_groups, to_2d, unbatch
from cnnlab.ops.shape import Pads, as_pads, as_tuple, conv_output_size, torch_same_padding

Padding = int | str | tuple | list


def resolve_padding(padding: Padding, kernel: tuple[int, ...], stride: tuple[int, ...],
                    dilation: tuple[int, ...]) -> Pads:
    """Padding as ((left, right), ...) per axis, with 'same' (PyTorch, stride 1) and 'valid' resolved."""
    ndim = len(kernel)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * ndim
        if mode == "same":
            if any(s != 1 for s in stride):
                raise CnnlabError("padding='same' is defined for stride 1 only (as in PyTorch); for a "
                                  "stride use cnnlab.ops.shape.same_padding(n, k, s, d) (Keras-style, "
                                  "asymmetric) and pass its (left, right) pairs as padding")
            return tuple(torch_same_padding(k, d) for k, d in zip(kernel, dilation, strict=True))
        raise CnnlabError(f"unknown padding {padding!r}; give an integer, 'same' or 'valid'")
    return as_pads(padding, ndim)


def pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """Pad the trailing spatial axes of (N, C, ...) by ((left, right), ...) with ``value``."""
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


def windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """The input seen by each kernel tap: (N, C, H', W') per tap, stacked to (N, C, kh, kw, H', W').

    One strided slice per tap (kh*kw slices) keeps this readable and exact; taps are few.
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    rows = []
    for a in range(kh):
        cols = []
        for b in range(kw):
            top, left = a * dh, b * dw
            cols.append(xp[:, :, top: top + (ho - 1) * sh + 1: sh, left: left + (wo - 1) * sw + 1: sw])
        rows.append(np.stack(cols, axis=2))
    return np.stack(rows, axis=2)


def conv2d_nchw(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pads: Pads,
                dilation: tuple[int, int], groups: int, bias: np.ndarray | None = None) -> np.ndarray:
    """The core on validated arrays: x (N, C, H, W), w (O, C/groups, kh, kw) -> (N, O, H', W')."""
    kernel = (w.shape[2], w.shape[3])
    out = tuple(conv_output_size(x.shape[2 + i], kernel[i], stride[i], pads[i], dilation[i],
                                 axis=("input height", "input width")[i]) for i in range(2))
    cols = windows(pad(x, pads), kernel, stride, dilation, out)  # (N, C, kh, kw, H', W')
    cin_g, cout_g = x.shape[1] // groups, w.shape[0] // groups
    parts = [np.einsum("ncabhw,ocab->nohw", cols[:, g * cin_g:(g + 1) * cin_g], w[g * cout_g:(g + 1) * cout_g])
             for g in range(groups)]
    y = np.concatenate(parts, axis=1)
    return y if bias is None else y + bias[None, :, None, None]


def conv2d(x: Any, w: Any, stride: int | tuple[int, int] = 1, padding: Padding = 0,
           dilation: int | tuple[int, int] = 1, groups: int = 1, bias: Any = None) -> np.ndarray:
    """2-D convolution (cross-correlation), exact in float64; same semantics as torch.nn.functional.conv2d.

    ``padding``: int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (stride 1).
    """
    x4, had_batch, had_channel = batch_input(x, 2)
    w4, bare = batch_weight(w, 2)
    g = check_groups(x4.shape[1], w4.shape[0], w4.shape[1], groups, "weights")
    s, d = as_tuple(stride, 2, "stride", 1), as_tuple(dilation, 2, "dilation", 1)
    pads = resolve_padding(padding, w4.shape[2:], s, d)
    y = conv2d_nchw(x4, w4, s, pads, d, g, check_bias(bias, w4.shape[0]))
    return unbatch(y, had_batch, had_channel or not bare)


def conv1d(x: Any, w: Any, stride: int | tuple[int] = 1, padding: Padding = 0,
           dilation: int | tuple[int] = 1, groups: int = 1, bias: Any = None) -> np.ndarray:
    """1-D convolution, like torch.nn.functional.conv1d: x (L), (C, L) or (N, C, L); w (k) or (O, C/g, k)."""
    x3, had_batch, had_channel = batch_input(x, 1)
    w3, bare = batch_weight(w, 1)
    g = check_groups(x3.shape[1], w3.shape[0], w3.shape[1], groups, "weights")
    s, d = as_tuple(stride, 1, "stride", 1), as_tuple(dilation, 1, "dilation", 1)
    pads = resolve_padding(padding, w3.shape[2:], s, d)
    y = conv2d_nchw(to_2d(x3), to_2d(w3), (1, s[0]), ((0, 0), pads[0]), (1, d[0]), g,
                    check_bias(bias, w3.shape[0]))
    return unbatch(y[:, :, 0], had_batch, had_channel or not bare)


def separable_conv2d(x: Any, w_depthwise: Any, w_pointwise: Any, stride: int | tuple[int, int] = 1,
                     padding: Padding = 0, dilation: int | tuple[int, int] = 1,
                     bias_depthwise: Any = None, bias: Any = None) -> np.ndarray:
    """Depthwise-separable convolution: a depthwise conv (groups = C) then a 1x1 pointwise conv.

    ``w_depthwise``: (C*m, 1, kh, kw) as in PyTorch (m = depth multiplier), (C, kh, kw) (one kernel
    per channel) or a bare (kh, kw) shared by every channel. ``w_pointwise``: (C_out, C*m, 1, 1) or
    the matrix (C_out, C*m). Stride, padding and dilation belong to the depthwise step.
    """
    x4, had_batch, had_channel = batch_input(x, 2)
    c = x4.shape[1]
    wd = np.asarray(w_depthwise, dtype=np.float64)
    if wd.ndim == 2:
        wd = np.broadcast_to(wd, (c, 1, *wd.shape))
    elif wd.ndim == 3:
        wd = wd[:, None]
    depth = conv2d(x4, wd, stride, padding, dilation, groups=c, bias=bias_depthwise)
    wp = np.asarray(w_pointwise, dtype=np.float64)
    if wp.ndim == 2:
        wp = wp[:, :, None, None]
    if wp.ndim != 4 or wp.shape[2:] != (1, 1):
        raise CnnlabError(f"pointwise weights have shape {wp.shape}; give (C_out, C_in) or (C_out, C_in, 1, 1)")
    y = conv2d(depth, wp, bias=bias)
    # (H, W) in and one output channel: (H', W') out, as with a bare kernel in conv2d.
    return unbatch(y, had_batch, had_channel or y.shape[1] != 1)
