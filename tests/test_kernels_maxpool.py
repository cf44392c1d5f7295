"""The 'same' max-pool kernels against the stock MaxPoolSame, and MaxPoolSame's routing to them."""

from __future__ import annotations

import pytest
import torch

from cnnlab import kernels
from cnnlab.kernels import maxpool
from cnnlab.layers.padding import MaxPoolSame
from cnnlab.models.mini_xception import mini_xception

CL = torch.channels_last
LIB = maxpool.library()
needs_lib = pytest.mark.skipif(LIB is None, reason="maxpool kernels cannot be built here")


@pytest.fixture(autouse=True)
def route_portable(monkeypatch):
    """These tests check the kernels on every path this build has, the portable one included, which
    training itself only uses where there is SIMD code (``maxpool.routed``)."""
    monkeypatch.setattr(maxpool, "ROUTE_PORTABLE", True)


@pytest.fixture(params=["simd", "portable"])
def path(request):
    """Run a test on the AVX-512 path (where built) and on the portable C path."""
    if LIB is None:
        pytest.skip("maxpool kernels cannot be built here")
    if request.param == "simd" and not LIB.maxpool_has_simd():
        pytest.skip("no AVX-512 path on this machine")
    LIB.maxpool_set_portable(request.param == "portable")
    yield request.param
    LIB.maxpool_set_portable(0)


class _Spy:
    """Counts calls to the kernel entry point that MaxPoolSame routes to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = maxpool.max_pool_same

        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(maxpool, "max_pool_same", counted)


def _bf16(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).to(torch.bfloat16).contiguous(memory_format=CL)


def _stock(pool: MaxPoolSame, x: torch.Tensor, dy: torch.Tensor, dtype: torch.dtype):  # noqa: ANN202
    """The stock MaxPoolSame's y and dx (eval mode keeps it off the kernel path)."""
    pool.eval()
    try:
        xs = x.detach().to(dtype, copy=True).requires_grad_()
        y = pool(xs)
        y.backward(dy.to(dtype))
    finally:
        pool.train()
    return y, xs.grad


def _kernel(pool: MaxPoolSame, x: torch.Tensor, dy: torch.Tensor):  # noqa: ANN202
    xk = x.clone().requires_grad_()
    assert maxpool.usable(xk, pool, pool.kernel_size)
    y = pool(xk)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=CL)
    y.backward(dy)
    assert xk.grad.dtype == torch.bfloat16 and xk.grad.is_contiguous(memory_format=CL)
    return y, xk.grad


@pytest.mark.parametrize("k, s", [(2, 1), (2, 2), (3, 1), (3, 2)])
@pytest.mark.parametrize("shape", [(2, 37, 7, 8), (2, 33, 1, 1), (1, 64, 2, 2), (3, 5, 9, 6), (2, 40, 11, 10)])
@pytest.mark.parametrize("chunks", [1, 3])
def test_values_and_gradients_match_stock(path, k, s, shape, chunks, monkeypatch) -> None:
    monkeypatch.setattr(maxpool, "SMALL", 0 if chunks > 1 else 1 << 30)
    monkeypatch.setattr(kernels, "chunk_count", lambda total: min(chunks, total))
    torch.manual_seed(sum(shape) + 10 * k + s)
    pool = MaxPoolSame(k, s)
    x = _bf16(*shape)
    # positive dy: a sum of several windows' dy cannot cancel to 0, so dx != 0 marks the argmax
    dy = (_bf16(shape[0], shape[1], -(-shape[2] // s), -(-shape[3] // s)).abs() + 0.125).to(torch.bfloat16)
    y, dx = _kernel(pool, x, dy)
    y_bf16, dx_bf16 = _stock(pool, x, dy, torch.bfloat16)
    assert torch.equal(y, y_bf16)  # a max is exact
    # the same windows get gradient (stock bf16 sums with a bf16 rounding per term, so compare
    # values with a tolerance where several windows' dy add up) ...
    assert torch.equal(dx != 0, dx_bf16 != 0)
    torch.testing.assert_close(dx.float(), dx_bf16.float(), rtol=3e-2, atol=3e-2)
    # ... and exactly the fp32 pool's sums of the same bf16 values, rounded once
    _, dx_fp32 = _stock(pool, x, dy, torch.float32)
    assert torch.equal(dx, dx_fp32.to(torch.bfloat16))


@pytest.mark.parametrize("k, s", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_ties_keep_the_first_max_and_nan_wins(path, k, s) -> None:
    x = torch.ones(2, 35, 5, 6, dtype=torch.bfloat16).contiguous(memory_format=CL)  # all equal: ties
    x[0, :, 3:, :] = 2.0  # a plateau of ties at another level
    x[0, 3, 1, 1] = x[0, 3, 1, 2] = float("nan")  # two NaNs in one window
    x[1, :, 2, 2] = float("nan")
    x[1, 34, 0, 0] = float("-inf")
    x[0, 7] = 0.0
    x[0, 7, :, ::2] = -0.0  # -0 == +0 in float: a tie, the first (either sign) keeps the argmax
    x[0, 8] = float("-inf")  # all -inf: the argmax stays at the window's first input position
    pool = MaxPoolSame(k, s)
    torch.manual_seed(k * s)
    dy = torch.rand(2, 35, -(-5 // s), -(-6 // s)).to(torch.bfloat16).contiguous(memory_format=CL)
    y, dx = _kernel(pool, x, dy)
    y_bf16, dx_bf16 = _stock(pool, x, dy, torch.bfloat16)
    assert torch.isnan(y).any() and torch.equal(torch.isnan(y), torch.isnan(y_bf16))
    assert torch.equal(y.nan_to_num(), y_bf16.nan_to_num())
    assert torch.equal(dx != 0, dx_bf16 != 0)  # the same argmax: first of the ties, the NaN
    _, dx_fp32 = _stock(pool, x, dy, torch.float32)
    assert torch.equal(dx, dx_fp32.to(torch.bfloat16))


@pytest.mark.skipif(LIB is None or not LIB.maxpool_has_simd(), reason="no AVX-512 path on this machine")
def test_simd_and_portable_paths_agree_bit_for_bit() -> None:
    torch.manual_seed(3)
    x = _bf16(2, 70, 13, 9)
    x[0, 5, 2, 2] = float("nan")
    dy = _bf16(2, 70, 7, 5)
    out = []
    for portable in (1, 0):
        LIB.maxpool_set_portable(portable)
        try:
            out.append(_kernel(MaxPoolSame(3, 2), x, dy))
        finally:
            LIB.maxpool_set_portable(0)
    (y0, dx0), (y1, dx1) = out
    assert torch.equal(y0.view(torch.int16), y1.view(torch.int16))
    assert torch.equal(dx0.view(torch.int16), dx1.view(torch.int16))


@needs_lib
def test_routing_only_uses_the_kernel_for_cpu_bf16_channels_last_training(monkeypatch) -> None:
    spy = _Spy(monkeypatch)
    pool = MaxPoolSame(3, 2)
    x = _bf16(2, 8, 6, 6)
    pool(x)
    assert spy.calls == 1
    pool.eval()
    pool(x)  # eval
    pool.train()
    with torch.no_grad():
        pool(x)
    pool(x.float())  # fp32
    pool(x.contiguous())  # NCHW memory
    handle = pool.register_forward_hook(lambda *_: None)
    pool(x)
    handle.remove()
    MaxPoolSame(3, 2, dims=1)(x[:, :, 0])  # 1-D
    assert spy.calls == 1
    assert not maxpool.usable(x, pool, maxpool.MAX_KERNEL + 1)


def test_kernels_off_means_not_usable(monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    kernels.load.cache_clear()
    try:
        assert maxpool.library() is None
        assert not maxpool.usable(_bf16(2, 8, 4, 4), MaxPoolSame(3, 2), 3)
    finally:
        monkeypatch.delenv("CNNLAB_KERNELS")
        kernels.load.cache_clear()


def _input_grad(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(xg).float(), target)
    loss.backward()
    return xg.grad


@needs_lib
def test_mini_xception_step_matches_kernels_off(monkeypatch) -> None:
    spy = _Spy(monkeypatch)
    torch.manual_seed(0)
    model = mini_xception(4, widths=(16, 24), dropout=0.0).to(memory_format=CL)
    x = torch.rand(2, 3, 23, 21).contiguous(memory_format=CL)
    target = torch.tensor([1, 3])
    got = _input_grad(model, x, target)
    assert spy.calls == 2
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    kernels.load.cache_clear()
    try:
        want = _input_grad(model, x, target)
    finally:
        monkeypatch.delenv("CNNLAB_KERNELS")
        kernels.load.cache_clear()
    assert spy.calls == 2  # kernels off: the stock path
    scale = want.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got, want, rtol=5e-2, atol=5e-2 * scale)


@needs_lib
def test_training_keeps_pytorchs_op_where_the_build_has_no_simd_code(monkeypatch) -> None:
    """The portable path is 7-14x slower than PyTorch's op on an AVX2 CPU: never routed to by default."""
    monkeypatch.setattr(maxpool, "ROUTE_PORTABLE", False)

    class NoSimd:
        def maxpool_has_simd(self) -> int:
            return 0

    assert not maxpool.routed(NoSimd())
    assert maxpool.routed(LIB) == bool(LIB.maxpool_has_simd())
    monkeypatch.setattr(maxpool, "ROUTE_PORTABLE", True)
    assert maxpool.routed(NoSimd())
