"""A short textbook walk-through of the exact ops, written to any output callback.

``run_tour(emit)`` calls ``emit`` with rich renderables (rules, panels and markup strings), so the
CLI prints it with a rich Console, and other code (a report, a notebook) can collect the pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.ops import conv2d, conv_transpose2d, pool2d, receptive_field, solve_output_padding
from cnnlab.ops.explain import explain_conv, explain_pool, explain_transpose, format_matrix
from cnnlab.ops.shape import TransposeArithmetic, conv_output_size

Emit = Callable[[Any], None]


def _block(title: str, a: np.ndarray) -> Any:
    from rich.panel import Panel

    return Panel.fit(format_matrix(a), title=title, border_style="dim")


def _bold(text: str, rest: str = "") -> Any:
    from rich.text import Text  # Text, not markup: "out[1, 0]" must print as written

    return Text.assemble((text, "bold"), rest)


def _row(*panels: Any) -> Any:
    from rich.columns import Columns

    return Columns(list(panels))


def _convolution(emit: Emit) -> None:
    from rich.rule import Rule

    x = np.array([[9, 4, 1], [1, 1, 1], [1, 2, 1]], dtype=float)
    w = np.array([[1, 0], [2, 1]], dtype=float)
    emit(Rule("1. Convolution (cross-correlation, stride 1, no padding)"))
    emit("Slide the 2x2 kernel over the 3x3 input; each output cell is the sum of the products under it.")
    emit(_row(_block("input", x), _block("kernel", w), _block("output", conv2d(x, w))))
    worked = explain_conv(x, w, (0, 1))
    emit(_bold(worked.text(), f"   ({worked.window_text()})"))
    emit("With padding 1 and stride 2 the same kernel gives a 2x2 output:")
    emit(_block("padding=1, stride=2", conv2d(x, w, stride=2, padding=1)))


def _pooling(emit: Emit) -> None:
    from rich.rule import Rule

    x = np.array([[1, 3, 2, 1], [4, 6, 5, 0], [7, 2, 9, 8], [1, 0, 3, 4]], dtype=float)
    emit(Rule("2. Max pooling (2x2 window, stride 2)"))
    emit("Each output keeps the largest value of its window; no weights to learn.")
    emit(_row(_block("input", x), _block("max pool 2x2", pool2d(x, 2)), _block("avg pool 2x2", pool2d(x, 2, mode="avg"))))
    emit(_bold(explain_pool(x, 2, (1, 0)).text()))


def _transpose(emit: Emit) -> None:
    from rich.rule import Rule

    x = np.array([[1, 2], [3, 4]], dtype=float)
    w = np.array([[1, 0], [1, 2]], dtype=float)
    emit(Rule("3. Transposed convolution (stride 2) = zero insertion + stride-1 conv"))
    emit("Insert z = s-1 zeros between inputs, pad p' = k-p-1 on each side, then convolve with stride 1 "
         "and the kernel flipped in both axes. Scatter (each input stamps x * kernel) gives the same numbers.")
    explained = explain_transpose(x, w, (1, 1), stride=2)
    emit(_row(_block("input", x), _block("kernel", w), _block("zero-inserted, padded", explained.steps.padded),
              _block("flipped kernel", explained.steps.kernel)))
    scatter = conv_transpose2d(x, w, stride=2)
    agree = np.allclose(scatter, conv_transpose2d(x, w, stride=2, method="zeros"))
    emit(_block(f"output 4x4 (scatter and zeros agree: {agree})", scatter))
    emit(_bold(explained.worked.text(), f"   ({explained.worked.window_text()})"))


def _shapes(emit: Emit) -> None:
    from rich.rule import Rule

    emit(Rule("4. Shape arithmetic"))
    out = conv_output_size(32, 3, 2, 1)
    emit(f"conv: out = floor((n + 2p - k) / s) + 1 = floor((32 + 2*1 - 3) / 2) + 1 = {out}")
    op = solve_output_padding(out, 3, 2, 1, target=32)
    for line in TransposeArithmetic(out, 3, 2, 1, op, 1).lines():
        emit(line)
    emit(f"(the solver picked output_padding = {op} to get back to 32)")
    rows = receptive_field("conv3,conv3,pool2,conv3")
    emit("receptive field of conv3, conv3, pool2, conv3: " +
         " -> ".join(f"{r.rf} (jump {r.jump})" for r in rows) +
         ": rf grows by (k-1) x jump, and the jump multiplies by each stride")


def run_tour(emit: Emit) -> None:
    """Emit the whole tour: a convolution with a worked cell, pooling, a transposed conv, shapes."""
    for part in (_convolution, _pooling, _transpose, _shapes):
        part(emit)
        emit("")
