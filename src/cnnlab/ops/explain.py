"""Worked sums: one output cell of a conv, pool or transposed conv, written out term by term.

Each explanation recomputes the cell with plain loops over the padded input (independently of the
vectorised ops), so the text a student reads is also a check of the op: the tests compare both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.ops._layout import batch_input, batch_weight, check_groups
from cnnlab.ops.conv import pad, resolve_padding
from cnnlab.ops.conv_transpose import TransposeSteps, transpose_steps
from cnnlab.ops.pool import MODES, _pool_pads
from cnnlab.ops.shape import as_tuple, conv_output_size


def fmt(v: float) -> str:
    """A number as a student writes it: 3 not 3.0, 0.3333 not 0.333333333."""
    if np.isfinite(v) and float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}"


def format_matrix(a: np.ndarray) -> str:
    """A 1-D or 2-D array as right-aligned rows of numbers (higher ranks: one block per 2-D slice)."""
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[None]
    if a.ndim > 2:
        return "\n".join(f"[{', '.join(map(str, idx))}]\n{format_matrix(a[idx])}"
                         for idx in np.ndindex(*a.shape[:-2]))
    cells = [[fmt(v) for v in row] for row in a]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  ".join(c.rjust(width) for c in row) for row in cells)


@dataclass(frozen=True)
class Term:
    """One input cell in the window (coordinates in the padded input) and its weight (None: pooling)."""

    value: float
    weight: float | None
    where: tuple[int, int, int]  # (channel, row, col) in the padded input
    padding: bool


@dataclass(frozen=True)
class WorkedSum:
    """One output cell, its terms and its value."""

    label: str  # "out[1, 0]"
    kind: str  # "conv", "max", "min" or "avg"
    terms: list[Term]
    value: float
    bias: float | None = None
    divisor: int | None = None  # avg pooling: what the sum is divided by

    def rows(self) -> list[int]:
        return sorted({t.where[1] for t in self.terms})

    def cols(self) -> list[int]:
        return sorted({t.where[2] for t in self.terms})

    def window_text(self) -> str:
        r, c = self.rows(), self.cols()
        chans = sorted({t.where[0] for t in self.terms})
        where = f"rows {_span(r)}, cols {_span(c)}" if len(r) > 1 or r != [0] else f"positions {_span(c)}"
        pads = sum(t.padding for t in self.terms)
        extra = f", channels {_span(chans)}" if len(chans) > 1 else ""
        return f"window: {where}{extra} of the padded input" + (f" ({pads} padding cells)" if pads else "")

    def text(self) -> str:
        """``out[0, 0] = 9×1 + 4×0 + 1×0 + 1×1 = 10`` (pooling: ``max(9, 4, 1, 1) = 9``)."""
        vals = [fmt(t.value) for t in self.terms]
        if self.kind == "conv":
            expr = " + ".join(f"{_paren(t.value)}×{_paren(t.weight)}" for t in self.terms)  # type: ignore[arg-type]
            if self.bias is not None:
                expr += f" + {_paren(self.bias)}"
        elif self.kind == "avg":
            expr = f"({' + '.join(vals)}) / {self.divisor}"
        else:
            expr = f"{self.kind}({', '.join(vals)})"
        return f"{self.label} = {expr} = {fmt(self.value)}"


def _span(v: Sequence[int]) -> str:
    return str(v[0]) if len(v) == 1 else f"{v[0]}..{v[-1]}" + (f" step {v[1] - v[0]}" if v[1] - v[0] > 1 else "")


def _paren(v: float) -> str:
    return f"({fmt(v)})" if v < 0 else fmt(v)


def _label(cell: tuple[int, ...], one_d: bool, channel: int | None = None) -> str:
    """``out[i, j]``; with several channels the channel leads, as when indexing the (C, H, W) output."""
    idx = [str(cell[-1])] if one_d else [str(cell[0]), str(cell[1])]
    return f"out[{', '.join(([str(channel)] if channel is not None else []) + idx)}]"


def _cell(cell: int | Sequence[int], one_d: bool) -> tuple[int, int]:
    items = (cell,) if isinstance(cell, int) else tuple(cell)
    want = 1 if one_d else 2
    if len(items) != want:
        raise CnnlabError(f"explain needs {'one index I' if one_d else 'two indices I,J'} for the output "
                          f"cell, got {items}")
    return (0, int(items[0])) if one_d else (int(items[0]), int(items[1]))


def _check_cell(cell: tuple[int, int], out: tuple[int, int], one_d: bool) -> None:
    if not all(0 <= c < o for c, o in zip(cell, out, strict=True)):
        size = f"{out[1]}" if one_d else f"{out[0]}x{out[1]}"
        raise CnnlabError(f"cell {cell[1] if one_d else cell} is outside the {size} output; pick indices from 0 "
                          f"to {out[1] - 1 if one_d else (out[0] - 1, out[1] - 1)}")


def _check_index(value: int, size: int, name: str) -> None:
    if not 0 <= value < size:
        raise CnnlabError(f"{name} {value} does not exist: there are {size}; pick one from 0 to {size - 1}")


def _lift(x: Any, one_d: bool) -> tuple[np.ndarray, int]:
    """Input as (N, C, H, W) and the number of spatial axes the caller used."""
    x4, _, _ = batch_input(x, 1 if one_d else 2)
    return (x4[:, :, None] if one_d else x4), (1 if one_d else 2)


def explain_conv(x: Any, w: Any, cell: int | Sequence[int], stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: Any = None, batch: int = 0,
                 out_channel: int = 0) -> WorkedSum:
    """The worked sum of one output cell of conv2d (two indices) or conv1d (one index, 1-D input)."""
    one_d = np.ndim(w) in (1, 3)
    x4, nsp = _lift(x, one_d)
    w4, _ = batch_weight(w, nsp)
    if one_d:
        w4 = w4[:, :, None]
    g = check_groups(x4.shape[1], w4.shape[0], w4.shape[1], groups, "weights")
    s = (1, *as_tuple(stride, 1, "stride", 1)) if one_d else as_tuple(stride, 2, "stride", 1)
    d = (1, *as_tuple(dilation, 1, "dilation", 1)) if one_d else as_tuple(dilation, 2, "dilation", 1)
    pads = resolve_padding(padding, w4.shape[2 + (2 - nsp):], s[2 - nsp:], d[2 - nsp:])
    pads = ((0, 0), *pads) if one_d else pads
    out = tuple(conv_output_size(x4.shape[2 + i], w4.shape[2 + i], s[i], pads[i], d[i]) for i in range(2))
    ij = _cell(cell, one_d)
    _check_cell(ij, out, one_d)
    _check_index(batch, x4.shape[0], "batch index")
    _check_index(out_channel, w4.shape[0], "output channel")
    xp = pad(x4, pads)
    b = None if bias is None else float(np.asarray(bias, dtype=np.float64).reshape(-1)[out_channel])
    label = _label(ij, one_d, out_channel if w4.shape[0] > 1 else None)
    return _conv_sum(xp, w4, ij, s, d, g, pads, batch, out_channel, b, label)


def _conv_sum(xp: np.ndarray, w4: np.ndarray, ij: tuple[int, int], s: Sequence[int], d: Sequence[int], g: int,
              pads: Any, batch: int, o: int, bias: float | None, label: str) -> WorkedSum:
    cin_g, cout_g = xp.shape[1] // g, w4.shape[0] // g
    first = (o // cout_g) * cin_g
    terms, total = [], 0.0
    for c in range(cin_g):
        for a in range(w4.shape[2]):
            for bb in range(w4.shape[3]):
                r, col = ij[0] * s[0] + a * d[0], ij[1] * s[1] + bb * d[1]
                v, wt = float(xp[batch, first + c, r, col]), float(w4[o, c, a, bb])
                total += v * wt
                inside = pads[0][0] <= r < xp.shape[2] - pads[0][1] and pads[1][0] <= col < xp.shape[3] - pads[1][1]
                terms.append(Term(v, wt, (first + c, r, col), not inside))
    total += bias or 0.0
    return WorkedSum(label, "conv", terms, total, bias)


def explain_pool(x: Any, size: Any, cell: int | Sequence[int], stride: Any = None, padding: Any = 0,
                 mode: str = "max", dilation: Any = 1, count_include_pad: bool = True, one_d: bool = False,
                 batch: int = 0, channel: int = 0) -> WorkedSum:
    """The worked max/min/average of one output cell of pool2d (or pool1d with ``one_d=True``)."""
    if mode not in MODES:
        from cnnlab.errors import unknown

        raise unknown("pooling mode", mode, MODES)
    x4, nsp = _lift(x, one_d)
    k = as_tuple(size, nsp, "size", 1)
    s = k if stride is None else as_tuple(stride, nsp, "stride", 1)
    d = as_tuple(dilation, nsp, "dilation", 1)
    pads = _pool_pads(padding, nsp)
    if one_d:
        k, s, d, pads = (1, *k), (1, *s), (1, *d), ((0, 0), *pads)
    out = tuple(conv_output_size(x4.shape[2 + i], k[i], s[i], pads[i], d[i]) for i in range(2))
    ij = _cell(cell, one_d)
    _check_cell(ij, out, one_d)
    _check_index(batch, x4.shape[0], "batch index")
    _check_index(channel, x4.shape[1], "channel")
    fill = {"max": -np.inf, "min": np.inf, "avg": 0.0}[mode]
    xp = pad(x4, pads, fill)
    terms = []
    for a in range(k[0]):
        for b in range(k[1]):
            r, col = ij[0] * s[0] + a * d[0], ij[1] * s[1] + b * d[1]
            inside = pads[0][0] <= r < xp.shape[2] - pads[0][1] and pads[1][0] <= col < xp.shape[3] - pads[1][1]
            terms.append(Term(float(xp[batch, channel, r, col]), None, (channel, r, col), not inside))
    vals = [t.value for t in terms]
    label = _label(ij, one_d, channel if x4.shape[1] > 1 else None)
    if mode == "avg":
        divisor = len(terms) if count_include_pad else sum(not t.padding for t in terms)
        return WorkedSum(label, mode, terms, sum(vals) / divisor, divisor=divisor)
    return WorkedSum(label, mode, terms, max(vals) if mode == "max" else min(vals))


@dataclass(frozen=True)
class TransposeExplanation:
    """A transposed conv cell: the zero-inserted padded input, the flipped kernel, and the sum."""

    steps: TransposeSteps
    worked: WorkedSum
    stride: tuple[int, int]

    def text(self) -> str:
        z = tuple(s - 1 for s in self.stride)
        lines = [f"zero-inserted input (z = s-1 = {_pair(z)} zeros between cells):",
                 (_first_2d(self.steps.zero_inserted)),
                 f"padded by p' = d*(k-1)-p = {_pair(self.steps.p_prime)} on each side (+ output_padding at the "
                 f"far side), stride s' = 1:",
                 (_first_2d(self.steps.padded)),
                 "kernel flipped in both axes:",
                 (_first_2d(self.steps.kernel)),
                 self.worked.window_text(),
                 self.worked.text()]
        return "\n".join(lines)


def _pair(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]} (rows), {v[1]} (cols)"


def _first_2d(a: np.ndarray) -> str:
    """The matrix itself, or its first 2-D slice with a note when there are channels."""
    shape = a.shape
    while a.ndim > 2:
        a = a[0]
    note = f"(first of {int(np.prod(shape[:-2]))} channel slices; all are summed)\n" if len(shape) > 2 else ""
    return note + format_matrix(a)


def explain_transpose(x: Any, w: Any, cell: Sequence[int], stride: Any = 1, padding: Any = 0,
                      output_padding: Any = 0, dilation: Any = 1, groups: int = 1,
                      out_channel: int = 0) -> TransposeExplanation:
    """One cell of conv_transpose2d, via the zero-insertion construction (stride-1 conv, flipped kernel)."""
    steps = transpose_steps(x, w, stride, padding, output_padding, dilation, groups)
    x4, _ = _lift(steps.padded, False)
    w4, _ = batch_weight(steps.kernel, 2)
    d = as_tuple(dilation, 2, "dilation", 1)
    g = as_tuple(groups, 1, "groups", 1)[0]
    ij = _cell(cell, False)
    out = tuple(np.shape(steps.output)[-2:])
    _check_cell(ij, out, False)  # type: ignore[arg-type]
    _check_index(out_channel, w4.shape[0], "output channel")
    label = _label(ij, False, out_channel if w4.shape[0] > 1 else None)
    worked = _conv_sum(x4, w4, ij, (1, 1), d, g, ((0, 0), (0, 0)), 0, out_channel, None, label)
    return TransposeExplanation(steps, worked, as_tuple(stride, 2, "stride", 1))
