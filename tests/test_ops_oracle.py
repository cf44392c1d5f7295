"""cnnlab.ops against torch.nn.functional in float64, forward and gradients (micrograd-style oracle).

A transposed conv *is* the gradient of a conv with respect to its input, so the strongest check is
against torch.autograd.grad of F.conv2d, over random shapes, strides, paddings, dilations and groups.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import ops
from cnnlab.ops import shape

FAST = settings(max_examples=40, deadline=None)
TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    """A valid conv2d: shapes, stride, padding, dilation, groups; sizes include odd ones."""
    g = draw(st.integers(1, 3))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = tuple(draw(st.integers(max(1, shape.effective_kernel(k[i], d[i]) - 2 * p[i]),
                                  shape.effective_kernel(k[i], d[i]) + 6)) for i in range(2))
    n, cin, cout = draw(st.integers(1, 2)), g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    return dict(x=rng.normal(size=(n, cin, *size)), w=rng.normal(size=(cout, cin // g, *k)),
                b=rng.normal(size=cout), s=s, p=p, d=d, g=g)


@FAST
@given(conv_cases())
def test_conv2d_matches_torch(c: dict) -> None:
    want = F.conv2d(_t(c["x"]), _t(c["w"]), _t(c["b"]), c["s"], c["p"], c["d"], c["g"]).numpy()
    got = ops.conv2d(c["x"], c["w"], c["s"], c["p"], c["d"], c["g"], bias=c["b"])
    np.testing.assert_allclose(got, want, **TOL)


@FAST
@given(conv_cases())
def test_conv_transpose_is_the_input_gradient_of_conv(c: dict) -> None:
    x = _t(c["x"]).requires_grad_()
    y = F.conv2d(x, _t(c["w"]), None, c["s"], c["p"], c["d"], c["g"])
    gy = np.random.default_rng(1).normal(size=tuple(y.shape))
    (want,) = torch.autograd.grad(y, x, _t(gy))
    # the output_padding that recovers the conv's input size (the rows its last window never reached)
    op = tuple(c["x"].shape[2 + i] + 2 * c["p"][i] - shape.effective_kernel(c["w"].shape[2 + i], c["d"][i])
               - (y.shape[2 + i] - 1) * c["s"][i] for i in range(2))
    for method in ("scatter", "zeros"):
        got = ops.conv_transpose2d(gy, c["w"], c["s"], c["p"], op, c["d"], c["g"], method=method)
        np.testing.assert_allclose(got, want.numpy(), **TOL)


@FAST
@given(conv_cases(), st.data())
def test_conv_transpose_matches_torch_for_every_output_padding(c: dict, data: st.DataObject) -> None:
    # reuse the conv case, read as a transposed conv: weights (C_in, C_out/g, kh, kw)
    n, _, h, w = c["x"].shape
    x = np.random.default_rng(3).normal(size=(n, c["w"].shape[0], h, w))
    s, d = c["s"], c["d"]
    op = tuple(data.draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2))
    p = tuple(min(c["p"][i], (d[i] * (c["w"].shape[2 + i] - 1) + op[i]) // 2) for i in range(2))  # output >= 1
    bias = c["b"][: c["w"].shape[1] * c["g"]] if c["b"].size >= c["w"].shape[1] * c["g"] else None
    want = F.conv_transpose2d(_t(x), _t(c["w"]), None if bias is None else _t(bias), s, p, op, c["g"], d).numpy()
    scatter = ops.conv_transpose2d(x, c["w"], s, p, op, d, c["g"], bias=bias)
    zeros = ops.conv_transpose2d(x, c["w"], s, p, op, d, c["g"], bias=bias, method="zeros")
    np.testing.assert_allclose(scatter, want, **TOL)
    np.testing.assert_allclose(zeros, scatter, **TOL)


@FAST
@given(conv_cases())
def test_conv_and_transpose_are_adjoint(c: dict) -> None:
    """<conv(x), y> == <x, conv_transpose(y)>: the defining property, checked without torch."""
    y_shape = ops.conv2d(c["x"], c["w"], c["s"], c["p"], c["d"], c["g"]).shape
    y = np.random.default_rng(2).normal(size=y_shape)
    op = tuple(c["x"].shape[2 + i] + 2 * c["p"][i] - shape.effective_kernel(c["w"].shape[2 + i], c["d"][i])
               - (y_shape[2 + i] - 1) * c["s"][i] for i in range(2))
    lhs = np.sum(ops.conv2d(c["x"], c["w"], c["s"], c["p"], c["d"], c["g"]) * y)
    rhs = np.sum(c["x"] * ops.conv_transpose2d(y, c["w"], c["s"], c["p"], op, c["d"], c["g"]))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)


@FAST
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.integers(1, 2), st.integers(5, 11),
       st.integers(0, 2**31 - 1))
def test_pooling_matches_torch(k: int, s: int, p: int, d: int, n: int, seed: int) -> None:
    p = min(p, k // 2)  # PyTorch: padding at most half the window
    x = np.random.default_rng(seed).normal(size=(2, 3, n, n + 1))
    tx = _t(x)
    np.testing.assert_allclose(ops.pool2d(x, k, s, p, "max", dilation=d), F.max_pool2d(tx, k, s, p, d).numpy())
    np.testing.assert_allclose(ops.pool2d(x, k, s, p, "min", dilation=d), -F.max_pool2d(-tx, k, s, p, d).numpy())
    np.testing.assert_allclose(ops.pool2d(x, k, s, p, "avg"), F.avg_pool2d(tx, k, s, p).numpy(), **TOL)
    np.testing.assert_allclose(ops.pool2d(x, k, s, p, "avg", count_include_pad=False),
                               F.avg_pool2d(tx, k, s, p, count_include_pad=False).numpy(), **TOL)
    np.testing.assert_allclose(ops.pool1d(x[:, :, 0], k, s, p, "avg"), F.avg_pool1d(tx[:, :, 0], k, s, p).numpy(),
                               **TOL)


@FAST
@given(st.integers(1, 2), st.integers(1, 5), st.integers(1, 2), st.integers(0, 2), st.integers(1, 3),
       st.integers(0, 2**31 - 1))
def test_1d_ops_match_torch(g: int, k: int, s: int, p: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    length = shape.effective_kernel(k, d) + 4
    x, w = rng.normal(size=(2, 2 * g, length)), rng.normal(size=(2 * g, 3, k))
    # w[:, :2] as conv weights (C_out=2g, C_in/g=2, k); all of w as transposed weights (C_in=2g, 3, k)
    np.testing.assert_allclose(ops.conv1d(x, w[:, :2], s, p, d, g),
                               F.conv1d(_t(x), _t(w[:, :2]), None, s, p, d, g).numpy(), **TOL)
    op = max(s, d) - 1
    want = F.conv_transpose1d(_t(x), _t(w), None, s, 0, op, g, d).numpy()
    for method in ("scatter", "zeros"):
        np.testing.assert_allclose(ops.conv_transpose1d(x, w, s, 0, op, d, g, method=method), want, **TOL)


@FAST
@given(st.integers(1, 4), st.integers(1, 2), st.integers(4, 9), st.integers(0, 2**31 - 1))
def test_same_padding_matches_torch_for_stride_one(k: int, d: int, n: int, seed: int) -> None:
    x, w = np.random.default_rng(seed).normal(size=(1, 2, n, n + 2)), np.ones((3, 2, k, k))
    want = F.conv2d(_t(x), _t(w), padding="same", dilation=d).numpy()
    np.testing.assert_allclose(ops.conv2d(x, w, padding="same", dilation=d), want, **TOL)
    assert shape.same_padding(n, k, 1, d) == shape.torch_same_padding(k, d)


@FAST
@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(1, 3))
def test_keras_same_padding_gives_ceil_n_over_s(n: int, k: int, s: int, d: int) -> None:
    left, right = shape.same_padding(n, k, s, d)
    assert 0 <= right - left <= 1
    assert shape.conv_output_size(n, k, s, (left, right), d) == -(-n // s)


def test_separable_conv_is_depthwise_then_pointwise() -> None:
    rng = np.random.default_rng(0)
    x, wd, wp = rng.normal(size=(2, 3, 7, 6)), rng.normal(size=(6, 1, 3, 3)), rng.normal(size=(4, 6, 1, 1))
    want = F.conv2d(F.conv2d(_t(x), _t(wd), None, 2, 1, 1, groups=3), _t(wp)).numpy()
    np.testing.assert_allclose(ops.separable_conv2d(x, wd, wp, stride=2, padding=1), want, **TOL)
    np.testing.assert_allclose(ops.separable_conv2d(x, wd, wp[:, :, 0, 0], stride=2, padding=1), want, **TOL)


def test_ranks_follow_the_caller() -> None:
    x, k = np.arange(16.0).reshape(4, 4), np.ones((2, 2))
    assert ops.conv2d(x, k).shape == (3, 3)
    assert ops.conv2d(x[None], k).shape == (1, 3, 3)
    assert ops.conv2d(x, np.ones((5, 1, 2, 2))).shape == (5, 3, 3)
    assert ops.conv2d(x[None, None], k).shape == (1, 1, 3, 3)
    assert ops.pool2d(x, 2).shape == (2, 2)
    assert ops.conv_transpose2d(x, k, stride=2).shape == (8, 8)
    assert ops.conv1d(np.arange(5.0), np.ones(2)).shape == (4,)


def test_every_valid_output_padding_on_odd_sizes() -> None:
    """Exhaustive over small strides/dilations: each output_padding < max(stride, dilation), both methods."""
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(1, 2, 5, 7)), rng.normal(size=(2, 3, 3, 2))
    checked = 0
    for s in (1, 2, 3):
        for d in (1, 2, 3):
            for op in range(max(s, d)):
                for p in (0, 1, 2):
                    want = F.conv_transpose2d(_t(x), _t(w), None, s, p, op, 1, d).numpy()
                    for method in ("scatter", "zeros"):
                        got = ops.conv_transpose2d(x, w, s, p, op, d, method=method)
                        np.testing.assert_allclose(got, want, **TOL)
                    checked += 1
    assert checked == 3 * (1 + 2 + 3 + 2 + 2 + 3 + 3 + 3 + 3)
