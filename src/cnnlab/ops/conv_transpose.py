"""Exact transposed convolution in NumPy float64, computed two ways that must agree.

``method="scatter"``: the adjoint of conv2d. Each input cell adds ``x * w`` (the whole kernel) into
the output at ``i*s + a*d - p``; this is exactly the gradient of a convolution with respect to its
input, which is what a transposed conv is.

``method="zeros"``: the lecture's construction, a plain stride-1 convolution over a stretched input:

1. insert ``z = s-1`` zeros between neighbouring input cells;
2. pad ``p' = d*(k-1) - p`` zeros on each side (``k-p-1`` for dilation 1), plus ``output_padding``
   on the far side (bottom/right); a negative ``p'`` crops instead;
3. convolve with stride 1 and dilation d, using the kernel flipped in space with its in/out channel
   axes swapped.

:func:`transpose_steps` returns the intermediate arrays of the second method for teaching.
Weights use PyTorch's transposed layout (C_in, C_out/groups, kh, kw), or a bare (kh, kw) kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError, unknown
from cnnlab.ops._layout import batch_input, batch_weight, check_bias, to_2d, unbatch
from cnnlab.ops.conv import conv2d_nchw
from cnnlab.ops.shape import Pads, as_pads, as_tuple, check_output_padding, conv_transpose_output_size

METHODS = ("scatter", "zeros")


@dataclass(frozen=True)
class TransposeSteps:
    """The zero-insertion construction, in the caller's layout (no batch/channel axes if none given)."""

    zero_inserted: np.ndarray  # z = s-1 zeros between input cells
    padded: np.ndarray  # ... then p' = d*(k-1)-p on each side (+ output_padding at the far side)
    kernel: np.ndarray  # spatially flipped, in/out swapped: (C_out, C_in/groups, kh, kw) or (kh, kw)
    output: np.ndarray  # the stride-1 convolution of ``padded`` with ``kernel``
    p_prime: tuple[int, int]  # per axis


@dataclass(frozen=True)
class _Args:
    x: np.ndarray  # (N, C_in, H, W)
    w: np.ndarray  # (C_in, C_out/g, kh, kw)
    s: tuple[int, int]
    pads: Pads
    op: tuple[int, int]
    d: tuple[int, int]
    g: int
    bias: np.ndarray | None


def _validate(x4: np.ndarray, w4: np.ndarray, stride: Any, padding: Any, output_padding: Any, dilation: Any,
              groups: Any, bias: Any, ndim: int = 2) -> _Args:
    if isinstance(padding, str):
        raise CnnlabError(f"padding {padding!r} is not defined for a transposed conv; give an integer "
                          "(use cnnlab ops shape transpose --target T to find the output_padding for a size)")
    g = as_tuple(groups, 1, "groups", 1)[0]
    c_in = x4.shape[1]
    if c_in % g:
        raise CnnlabError(f"groups={g} does not divide the {c_in} input channels; use a groups value that "
                          f"divides the input channels, e.g. 1")
    if w4.shape[0] != c_in:
        raise CnnlabError(f"input has {c_in} channels but the transposed-conv weights expect {w4.shape[0]} "
                          f"(their layout is (C_in, C_out/groups, kh, kw)); give weights of shape "
                          f"({c_in}, C_out/{g}, kh, kw)")
    s, d = as_tuple(stride, ndim, "stride", 1), as_tuple(dilation, ndim, "dilation", 1)
    op = as_tuple(output_padding, ndim, "output_padding", 0)
    pads = as_pads(padding, ndim)
    for o, si, di in zip(op, s, d, strict=True):
        check_output_padding(o, si, di)
    if ndim == 1:  # run 1-D as 2-D with a height of 1
        s, d, op, pads = (1, *s), (1, *d), (0, *op), ((0, 0), *pads)
    for i in range(2):
        (left, right), k = pads[i], w4.shape[2 + i]
        if left != right:
            raise CnnlabError(f"transposed conv padding must be symmetric, got {pads[i]}; give one integer "
                              f"per axis (use output_padding for one extra row/column at the far side)")
        conv_transpose_output_size(x4.shape[2 + i], k, s[i], left, op[i], d[i])
    return _Args(x4, w4, s, pads, op, d, g, check_bias(bias, w4.shape[1] * g))


def _out_size(a: _Args, i: int) -> int:
    return (a.x.shape[2 + i] - 1) * a.s[i] - 2 * a.pads[i][0] + a.d[i] * (a.w.shape[2 + i] - 1) + a.op[i] + 1


def _scatter(a: _Args) -> np.ndarray:
    """Adjoint of conv2d: every input cell scatters ``x * kernel`` into a full buffer, then crop p."""
    n, c_in, h, w = a.x.shape
    kh, kw = a.w.shape[2:]
    cin_g, cout_g = c_in // a.g, a.w.shape[1]
    full = [(h - 1) * a.s[0] + a.d[0] * (kh - 1) + 1 + a.op[0], (w - 1) * a.s[1] + a.d[1] * (kw - 1) + 1 + a.op[1]]
    buf = np.zeros((n, cout_g * a.g, *full))
    for g in range(a.g):
        xg, wg = a.x[:, g * cin_g:(g + 1) * cin_g], a.w[g * cin_g:(g + 1) * cin_g]
        for ki in range(kh):
            for kj in range(kw):
                top, left = ki * a.d[0], kj * a.d[1]
                contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, ki, kj])  # (N, C_out/g, H, W)
                buf[:, g * cout_g:(g + 1) * cout_g, top: top + (h - 1) * a.s[0] + 1: a.s[0],
                    left: left + (w - 1) * a.s[1] + 1: a.s[1]] += contrib
    (p0, _), (p1, _) = a.pads
    return buf[:, :, p0: p0 + _out_size(a, 0), p1: p1 + _out_size(a, 1)]


def pad_or_crop(x: np.ndarray, pads: Pads) -> np.ndarray:
    """Pad (N, C, H, W) by ((top, bottom), (left, right)); negative amounts crop."""
    x = np.pad(x, ((0, 0), (0, 0), *[(max(lo, 0), max(hi, 0)) for lo, hi in pads]))
    (t, b), (l, r) = [(max(-lo, 0), max(-hi, 0)) for lo, hi in pads]
    return x[:, :, t: x.shape[2] - b, l: x.shape[3] - r]


def _zeros_steps(a: _Args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    n, c_in, h, w = a.x.shape
    kh, kw = a.w.shape[2:]
    stretched = np.zeros((n, c_in, (h - 1) * a.s[0] + 1, (w - 1) * a.s[1] + 1))
    stretched[:, :, :: a.s[0], :: a.s[1]] = a.x
    pp = (a.d[0] * (kh - 1) - a.pads[0][0], a.d[1] * (kw - 1) - a.pads[1][0])
    padded = pad_or_crop(stretched, ((pp[0], pp[0] + a.op[0]), (pp[1], pp[1] + a.op[1])))
    cin_g = c_in // a.g
    # per group: (C_in/g, C_out/g, kh, kw) -> (C_out/g, C_in/g, kh, kw), flipped in both spatial axes
    kernel = np.concatenate([a.w[g * cin_g:(g + 1) * cin_g].transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
                             for g in range(a.g)], axis=0)
    out = conv2d_nchw(padded, kernel, (1, 1), ((0, 0), (0, 0)), a.d, a.g)
    return stretched, padded, kernel, out, pp


def _run(a: _Args, method: str) -> np.ndarray:
    if method not in METHODS:
        raise unknown("transposed-conv method", method, METHODS)
    y = _scatter(a) if method == "scatter" else _zeros_steps(a)[3]
    return y if a.bias is None else y + a.bias[None, :, None, None]


def conv_transpose2d(x: Any, w: Any, stride: int | tuple[int, int] = 1, padding: int | tuple = 0,
                     output_padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                     groups: int = 1, bias: Any = None, method: str = "scatter") -> np.ndarray:
    """2-D transposed convolution, same semantics as torch.nn.functional.conv_transpose2d.

    Output size per axis: (n-1)*s - 2p + d*(k-1) + output_padding + 1. ``method`` picks the
    computation ('scatter' or 'zeros'); both give the same numbers.
    """
    x4, had_batch, had_channel = batch_input(x, 2)
    w4, bare = batch_weight(w, 2)
    a = _validate(x4, w4, stride, padding, output_padding, dilation, groups, bias)
    return unbatch(_run(a, method), had_batch, had_channel or not bare)


def conv_transpose1d(x: Any, w: Any, stride: int | tuple[int] = 1, padding: int | tuple = 0,
                     output_padding: int | tuple[int] = 0, dilation: int | tuple[int] = 1,
                     groups: int = 1, bias: Any = None, method: str = "scatter") -> np.ndarray:
    """1-D transposed convolution: x (L), (C, L) or (N, C, L); w (k) or (C_in, C_out/groups, k)."""
    x3, had_batch, had_channel = batch_input(x, 1)
    w3, bare = batch_weight(w, 1)
    a = _validate(to_2d(x3), to_2d(w3), stride, padding, output_padding, dilation, groups, bias, ndim=1)
    return unbatch(_run(a, method)[:, :, 0], had_batch, had_channel or not bare)


def transpose_steps(x: Any, w: Any, stride: int | tuple[int, int] = 1, padding: int | tuple = 0,
                    output_padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                    groups: int = 1) -> TransposeSteps:
    """The intermediate arrays of the zero-insertion construction of a 2-D transposed conv."""
    x4, had_batch, had_channel = batch_input(x, 2)
    w4, bare = batch_weight(w, 2)
    a = _validate(x4, w4, stride, padding, output_padding, dilation, groups, None)
    stretched, padded, kernel, out, pp = _zeros_steps(a)
    return TransposeSteps(
        zero_inserted=unbatch(stretched, had_batch, had_channel),
        padded=unbatch(padded, had_batch, had_channel),
        kernel=kernel[0, 0] if bare else kernel,
        output=unbatch(out, had_batch, had_channel or not bare),
        p_prime=pp,
    )
