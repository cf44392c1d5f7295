"""Hand-checked numbers for the exact ops, the worked-sum text, the shape solver and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import ops
from cnnlab.errors import CnnlabError
from cnnlab.ops import shape
from cnnlab.ops.explain import explain_conv, explain_pool, explain_transpose, format_matrix

X = np.array([[9, 4, 1], [1, 1, 1], [1, 2, 1]], dtype=float)
DIAG = np.array([[1, 0], [0, 1]], dtype=float)


# ---------------------------------------------------------------------------------- worked numbers
def test_conv_of_the_lecture_matrix() -> None:
    # each output = top-left + bottom-right of its 2x2 window: 9+1, 4+1, 1+2, 1+1
    np.testing.assert_array_equal(ops.conv2d(X, DIAG), [[10, 5], [3, 2]])
    # padded 5x5, windows at rows/cols 0 and 2: 0+9, 0+1, 0+1, 1+1
    np.testing.assert_array_equal(ops.conv2d(X, DIAG, stride=2, padding=1), [[9, 1], [1, 2]])


def test_pooling_of_the_lecture_matrix() -> None:
    np.testing.assert_array_equal(ops.pool2d(X, 2, stride=1), [[9, 4], [2, 2]])
    np.testing.assert_array_equal(ops.pool2d(X, 2, stride=1, mode="min"), [[1, 1], [1, 1]])
    np.testing.assert_array_equal(ops.pool2d(X, 2, stride=1, mode="avg"), [[15 / 4, 7 / 4], [5 / 4, 5 / 4]])
    # padding 1, 2x2 windows, stride 2: the corner window sees 3 padding cells and the 9
    assert ops.pool2d(X, 2, padding=1, mode="avg")[0, 0] == 9 / 4  # padding counts (PyTorch default)
    assert ops.pool2d(X, 2, padding=1, mode="avg", count_include_pad=False)[0, 0] == 9
    assert ops.pool2d(-X, 2, padding=1, mode="max")[0, 0] == -9  # -inf padding never wins


def test_transposed_conv_stamps_the_kernel() -> None:
    x = np.array([[1, 2], [3, 4]], dtype=float)
    want = [[1, 0, 2, 0], [0, 2, 0, 4], [3, 0, 4, 0], [0, 6, 0, 8]]  # x[i, j] * [[1, 0], [0, 2]] at (2i, 2j)
    for method in ("scatter", "zeros"):
        np.testing.assert_array_equal(ops.conv_transpose2d(x, [[1, 0], [0, 2]], stride=2, method=method), want)
    # stride 1 with a box kernel: every output sums the inputs whose stamp covers it
    np.testing.assert_array_equal(ops.conv_transpose2d(x, np.ones((2, 2))), [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


def test_transpose_steps_show_the_construction() -> None:
    steps = ops.transpose_steps([[1, 2], [3, 4]], [[1, 0], [0, 2]], stride=2, padding=0, output_padding=1)
    np.testing.assert_array_equal(steps.zero_inserted, [[1, 0, 2], [0, 0, 0], [3, 0, 4]])
    assert steps.p_prime == (1, 1)  # k - p - 1 = 2 - 0 - 1
    assert steps.padded.shape == (3 + 2 + 1, 3 + 2 + 1)  # + output_padding at the far side
    np.testing.assert_array_equal(steps.kernel, [[2, 0], [0, 1]])  # flipped in both axes
    assert steps.output.shape == (5, 5)


def test_1d_ops_and_dilation_and_groups() -> None:
    np.testing.assert_array_equal(ops.conv1d([1, 2, 3, 4], [1, 1]), [3, 5, 7])
    np.testing.assert_array_equal(ops.conv1d([1, 2, 3, 4, 5], [1, 1], dilation=2), [4, 6, 8])
    np.testing.assert_array_equal(ops.pool1d([1, 5, 2, 8, 3], 2), [5, 8])
    np.testing.assert_array_equal(ops.conv_transpose1d([1, 2], [1, 1], stride=2), [1, 1, 2, 2])
    x = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))])  # channel 0 = 1, channel 1 = 2
    w = np.array([1.0, 10.0]).reshape(2, 1, 1, 1)  # groups=2: each channel its own 1x1 weight
    np.testing.assert_array_equal(ops.conv2d(x, w, groups=2), [np.ones((2, 2)), 20 * np.ones((2, 2))])


# ---------------------------------------------------------------------------------- worked sums
def test_explain_conv_text() -> None:
    worked = explain_conv(X, DIAG, (0, 0))
    assert worked.text() == "out[0, 0] = 9×1 + 4×0 + 1×0 + 1×1 = 10"
    assert worked.window_text() == "window: rows 0..1, cols 0..1 of the padded input"
    padded = explain_conv(X, [[1, -1], [0, 1]], (0, 0), padding=1)
    assert padded.text() == "out[0, 0] = 0×1 + 0×(-1) + 0×0 + 9×1 = 9"
    assert "(3 padding cells)" in padded.window_text()


def test_explain_agrees_with_the_op_everywhere() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 6, 5)), rng.normal(size=(4, 1, 3, 2))
    y = ops.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    for o in range(4):
        for i, j in np.ndindex(*y.shape[1:]):
            got = explain_conv(x, w, (i, j), (2, 1), 1, (1, 2), 2, out_channel=o).value
            assert got == pytest.approx(y[o, i, j], abs=1e-12)
    t = ops.conv_transpose2d(X, DIAG, stride=2, padding=1, output_padding=1)
    for i, j in np.ndindex(*t.shape):
        assert explain_transpose(X, DIAG, (i, j), 2, 1, 1).worked.value == pytest.approx(t[i, j])


def test_explain_pool_and_1d_text() -> None:
    assert explain_pool(X, 2, (0, 0), stride=1).text() == "out[0, 0] = max(9, 4, 1, 1) = 9"
    assert explain_pool(X, 2, (1, 1), stride=1, mode="avg").text() == "out[1, 1] = (1 + 1 + 2 + 1) / 4 = 1.25"
    assert explain_conv([1, 2, 3, 4], [1, -1], 2).text() == "out[2] = 3×1 + 4×(-1) = -1"


def test_explain_transpose_shows_zero_insertion() -> None:
    text = explain_transpose([[1, 2], [3, 4]], [[1, 0], [0, 2]], (1, 1), stride=2).text()
    assert "z = s-1 = 1 zeros" in text
    assert "p' = d*(k-1)-p = 1" in text
    assert format_matrix(np.array([[0, 1, 0, 2, 0]])) in text  # a row of the padded, zero-inserted input
    assert text.endswith("out[1, 1] = 1×2 + 0×0 + 0×0 + 0×1 = 2")


# ---------------------------------------------------------------------------------- shape arithmetic
def test_output_sizes_and_same_padding() -> None:
    assert shape.conv_output_size(32, 3, 2, 1) == 16
    assert shape.conv_output_size(7, 3, 1, 0, d=2) == 3
    assert shape.pool_output_size(7, 2) == 3
    assert shape.conv_transpose_output_size(16, 3, 2, 1, 1) == 32
    assert shape.torch_same_padding(4) == (1, 2)  # odd extra cell on the right, as PyTorch
    assert shape.same_padding(5, 3, 2) == (1, 1)
    assert shape.same_padding(6, 3, 2) == (0, 1)  # Keras: asymmetric for stride 2 on even sizes


def test_transpose_arithmetic_lines() -> None:
    arith = shape.TransposeArithmetic(16, 3, 2, 1, 1, 1)
    assert (arith.z, arith.p_prime, arith.stretched, arith.padded, arith.out) == (1, 1, 31, 34, 32)
    text = "\n".join(arith.lines())
    assert "s' = 1" in text and "p' = k-p-1 = 3-1-1 = 1" in text
    assert "(16-1)*2 - 2*1 + (3-1) + 1 + 1 = 32" in text


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.data())
def test_the_construction_reproduces_the_output_size(n: int, k: int, s: int, p: int, d: int,
                                                     data: st.DataObject) -> None:
    op = data.draw(st.integers(0, max(s, d) - 1))
    arith = shape.TransposeArithmetic(n, k, s, p, op, d)
    if arith.padded - shape.effective_kernel(k, d) + 1 < 1:
        return  # too much padding: no output at all (the op raises for it)
    # a stride-1 conv over the padded, zero-inserted input gives exactly the transposed conv's size
    assert arith.padded - shape.effective_kernel(k, d) + 1 == arith.out
    assert shape.solve_output_padding(n, k, s, p, arith.out, d) == op


def test_solver_possible_and_impossible() -> None:
    assert shape.solve_output_padding(16, 3, 2, 1, target=32) == 1
    assert shape.solve_output_padding(16, 3, 2, 1, target=31) == 0
    assert shape.solve_output_padding(4, 3, 1, 0, target=9, d=2) == 1  # allowed: smaller than the dilation
    with pytest.raises(CnnlabError, match=r"impossible, because it needs output_padding=3, but output_padding "
                                          r"must be smaller than the stride \(2\)") as err:
        shape.solve_output_padding(16, 3, 2, 1, target=34)
    assert "padding=0 with output_padding=1 reaches 34" in str(err.value)
    with pytest.raises(CnnlabError, match="impossible, because with output_padding=0 the output is already 31 > 20"):
        shape.solve_output_padding(16, 3, 2, 1, target=20)


def test_receptive_field_of_known_stacks() -> None:
    assert [r.rf for r in shape.receptive_field("conv3,conv3")] == [3, 5]
    rows = shape.receptive_field("conv3,conv3s2,pool2", n=32)
    assert [(r.rf, r.jump, r.size) for r in rows] == [(3, 1, 30), (5, 2, 14), (7, 4, 7)]
    assert shape.receptive_field("conv3d2")[0].rf == 5
    assert [r.rf for r in shape.receptive_field("conv3s2,conv3")] == [3, 7]  # after a stride 2, steps count 2
    assert shape.parse_layers("pool3s1,conv5p2")[0].name == "pool3s1"
    with pytest.raises(CnnlabError, match="cannot read layer 'cnv3'"):
        shape.parse_layers("conv3,cnv3")


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("call", "message"), [
    (lambda: ops.conv2d(np.ones((2, 2)), np.ones((3, 3))), r"kernel spans 3 cells .* padded input height is only 2"),
    (lambda: ops.conv2d(np.ones((4, 4)), np.ones((3, 3)), dilation=2), r"kernel spans 5 cells \(kernel 3 with dilation 2\)"),
    (lambda: ops.conv2d(X, DIAG, stride=0), "stride must be a positive integer, got 0"),
    (lambda: ops.pool2d(X, 2, stride=(1, 0)), "stride must be a positive integer, got 0"),
    (lambda: ops.conv2d(X, DIAG, padding=-1), "padding must be >= 0, got -1"),
    (lambda: ops.conv2d(np.ones((3, 4, 4)), np.ones((2, 2, 3, 3))), "input has 3 channels but the weights expect 2"),
    (lambda: ops.conv2d(np.ones((3, 4, 4)), np.ones((2, 1, 3, 3)), groups=2), "groups=2 does not divide the 3 input"),
    (lambda: ops.conv2d(np.ones((4, 4, 4)), np.ones((3, 2, 3, 3)), groups=2), "groups=2 does not divide the 3 output"),
    (lambda: ops.conv_transpose2d(X, DIAG, stride=2, output_padding=2),
     r"output_padding=2 must be smaller than the stride \(2\) or the dilation \(1\)"),
    (lambda: ops.conv_transpose2d(X, DIAG, stride=1, dilation=2, output_padding=2),
     r"output_padding=2 must be smaller than the stride \(1\) or the dilation \(2\)"),
    (lambda: ops.conv_transpose2d(np.ones((2, 3, 3)), np.ones((3, 1, 2, 2))), "transposed-conv weights expect 3"),
    (lambda: ops.conv2d(X, DIAG, stride=2, padding="same"), "same_padding"),
    (lambda: ops.pool2d(X, 2, mode="mean"), "unknown pooling mode 'mean'"),
    (lambda: explain_conv(X, DIAG, (2, 0)), r"cell \(2, 0\) is outside the 2x2 output"),
    (lambda: ops.pool2d(X, 2, padding=2), "pooling padding 2 is more than half the window"),
    (lambda: ops.conv_transpose2d(X, DIAG, padding=((1, 0), (0, 0))), "transposed conv padding must be symmetric"),
])
def test_bad_input_is_one_clear_line(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CnnlabError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_ops_need_no_torch() -> None:
    """shape arithmetic and the NumPy ops import without torch (teaching machines need not install it)."""
    import subprocess
    import sys

    code = "import sys, cnnlab.ops, cnnlab.ops.explain, cnnlab.ops.tour; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
