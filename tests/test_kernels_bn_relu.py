"""The fused BatchNorm2d -> ReLU kernels against torch's BN + ReLU, and ConvNormAct's routing to them."""

from __future__ import annotations

import ctypes

import pytest
import torch
from torch import nn

from cnnlab import kernels
from cnnlab.kernels import bn_relu
from cnnlab.layers.conv_norm_act import ConvNormAct, SeparableBlock

CL = torch.channels_last
LIB = bn_relu.library()
needs_lib = pytest.mark.skipif(LIB is None, reason="bn_relu kernels cannot be built here")


@pytest.fixture(autouse=True)
def route_portable(monkeypatch):
    """These tests check the kernels on every path this build has, the portable one included, which
    training itself only uses where there is SIMD code (``bn_relu.routed``)."""
    monkeypatch.setattr(bn_relu, "ROUTE_PORTABLE", True)


@pytest.fixture(params=["simd", "portable"])
def path(request):
    """Run a test on the AVX-512 path (where built) and on the portable C path."""
    if request.param == "simd" and (LIB is None or not LIB.bn_relu_has_simd()):
        pytest.skip("no AVX-512 path on this machine")
    LIB.bn_relu_set_portable(request.param == "portable")
    yield request.param
    LIB.bn_relu_set_portable(0)


def _bf16(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    return (torch.randn(*shape) * scale + offset).to(torch.bfloat16).contiguous(memory_format=CL)


def _pair(channels: int, momentum: float) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    ref = nn.BatchNorm2d(channels, momentum=momentum)
    ref.load_state_dict(bn.state_dict())
    return bn, ref


@needs_lib
@pytest.mark.parametrize("shape", [(4, 37, 5, 7), (2, 16, 1, 1), (3, 32, 9, 9), (2, 3, 40, 41)])
@pytest.mark.parametrize("chunks", [1, 3])
def test_fused_matches_batchnorm_then_relu_under_autocast(path, shape, chunks, monkeypatch) -> None:
    # 3 chunks: partial sums from several threads (small tensors otherwise run as one chunk)
    monkeypatch.setattr(bn_relu, "SMALL", 0 if chunks > 1 else 1 << 30)
    monkeypatch.setattr(kernels, "chunk_count", lambda total: min(chunks, total))
    torch.manual_seed(sum(shape))
    bn, ref = _pair(shape[1], momentum=0.3)
    for step in range(2):  # twice: the running statistics' momentum update compounds
        x = _bf16(*shape, scale=3.0, offset=2.0 - step)  # a large mean tests the shifted sums
        dy = _bf16(*shape)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        assert bn_relu.usable(x1, bn, nn.ReLU())
        with torch.autocast("cpu", torch.bfloat16):
            y1 = bn_relu.bn_relu_train(x1, bn)
            y2 = torch.relu(ref(x2))
        assert y1.dtype == torch.bfloat16 and y1.is_contiguous(memory_format=CL)
        torch.testing.assert_close(y1.float(), y2.float(), rtol=1.6e-2, atol=1e-2)
        y1.backward(dy)
        y2.backward(dy)
        assert x1.grad.dtype == torch.bfloat16 and bn.weight.grad.dtype == torch.float32
        # dx is a difference of terms of size |w * invstd * dy|: with M = 2 it is ~0 (pure rounding)
        gain = (ref.weight / (x.float().var((0, 2, 3)) + ref.eps).sqrt()).abs().max().item()
        torch.testing.assert_close(x1.grad.float(), x2.grad.float(), rtol=2e-2,
                                   atol=2e-2 * gain * dy.float().abs().max().item())
        grad_atol = 1e-3 * dy.float().abs().sum().item() / shape[1]
        torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-3, atol=grad_atol)
        torch.testing.assert_close(bn.bias.grad, ref.bias.grad, rtol=1e-3, atol=grad_atol)
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
        assert bn.num_batches_tracked.item() == ref.num_batches_tracked.item() == step + 1
        for p in (*bn.parameters(), *ref.parameters()):
            p.grad = None


@needs_lib
def test_forward_rounding_is_nearest_even_and_keeps_nan(path) -> None:
    # shift 0: fmaf(x, s, 0) is the exact product rounded once to fp32, which torch rounds to bf16
    rows, c = 50, 21
    x = _bf16(rows, c, 1, 1, scale=2.0).view(rows, c)
    scale = torch.rand(c) + 0.5
    scale[:3] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9])  # exact ties and a non-tie on x=1
    x[0, :3] = 1.0
    x[1, 5] = float("nan")
    shift = torch.zeros(c)
    y = torch.empty_like(x)
    LIB.bn_relu_forward(x.data_ptr(), y.data_ptr(), scale.data_ptr(), shift.data_ptr(), c, 0, 0, rows)
    want = torch.relu((x.double() * scale.double()).float()).to(torch.bfloat16)
    assert torch.isnan(y[1, 5]) and torch.isnan(want[1, 5])
    assert torch.equal(y.nan_to_num(), want.nan_to_num())
    assert y[0, :3].float().tolist() == [1.0, 1 + 2**-6, 1.0]


@needs_lib
@pytest.mark.skipif(LIB is None or not LIB.bn_relu_has_simd(), reason="no AVX-512 path on this machine")
def test_simd_and_portable_paths_agree_bit_for_bit() -> None:
    torch.manual_seed(1)
    rows, c = 300, 45
    x, dy = _bf16(rows, c, 1, 1).view(rows, c), _bf16(rows, c, 1, 1).view(rows, c)
    scale, shift, cx, c0 = (torch.randn(c) for _ in range(4))
    mean = torch.randn(c)
    out = {}
    for portable in (1, 0):
        LIB.bn_relu_set_portable(portable)
        y, dx = torch.empty_like(x), torch.empty_like(x)
        s = [torch.empty(2, c, dtype=torch.float64) for _ in range(4)]
        LIB.bn_relu_forward(x.data_ptr(), y.data_ptr(), scale.data_ptr(), shift.data_ptr(), c, 0, 0, rows)
        LIB.bn_relu_backward_dx(x.data_ptr(), dy.data_ptr(), dx.data_ptr(), scale.data_ptr(),
                                shift.data_ptr(), cx.data_ptr(), c0.data_ptr(), c, 0, 0, rows)
        for chunk, (a, b) in enumerate([(0, 130), (130, rows)]):  # two chunks write two rows
            LIB.bn_relu_stats(x.data_ptr(), c, s[0].data_ptr(), s[1].data_ptr(), chunk, a, b)
            LIB.bn_relu_backward_stats(x.data_ptr(), dy.data_ptr(), scale.data_ptr(), shift.data_ptr(),
                                       mean.data_ptr(), c, s[2].data_ptr(), s[3].data_ptr(), chunk, a, b)
        out[portable] = (y, dx, [t.sum(0) for t in s])
    LIB.bn_relu_set_portable(0)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    for a, b in zip(out[0][2], out[1][2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)
    xf, g = x.double(), torch.where(torch.addcmul(shift, x.float(), scale) > 0, dy.double(), 0.0)
    torch.testing.assert_close(out[0][2][0], (xf - xf[0]).sum(0), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(out[0][2][3], (g * (xf - mean.double())).sum(0), rtol=1e-5, atol=1e-3)


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = bn_relu.bn_relu_train

        def counted(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
            self.calls += 1
            return real(x, bn)

        monkeypatch.setattr(bn_relu, "bn_relu_train", counted)


def _train(block: nn.Module, steps: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(7)
    opt = torch.optim.SGD(block.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = _bf16(4, block.in_channels, 10, 10, scale=2.0, offset=0.5)
        with torch.autocast("cpu", torch.bfloat16):
            loss = block(x).float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [t.detach().clone() for t in block.state_dict().values()]


@needs_lib
@pytest.mark.parametrize("order", ["bn-relu-conv", "conv-bn-relu"])
def test_block_trained_fused_matches_kernels_off(order, monkeypatch) -> None:
    spy = _Spy(monkeypatch)
    torch.manual_seed(0)
    fused = SeparableBlock(20, 24, order=order).to(memory_format=CL)
    stock = SeparableBlock(20, 24, order=order).to(memory_format=CL)
    stock.load_state_dict(fused.state_dict())
    names = list(fused.state_dict())
    got = _train(fused)
    assert spy.calls == 3
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    kernels.load.cache_clear()
    try:
        want = _train(stock)
    finally:
        monkeypatch.delenv("CNNLAB_KERNELS")
        kernels.load.cache_clear()
    assert spy.calls == 3  # kernels off: the stock path
    assert list(stock.state_dict()) == names and "bn.running_var" in names
    for name, a, b in zip(names, got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3, msg=name)


@needs_lib
def test_routing_only_fuses_cpu_bf16_training_without_hooks(monkeypatch) -> None:
    spy = _Spy(monkeypatch)
    block = ConvNormAct(8, 8, order="bn-relu-conv").to(memory_format=CL)
    x = _bf16(2, 8, 6, 6)
    with torch.autocast("cpu", torch.bfloat16):
        block(x)
        assert spy.calls == 1
        block.eval()
        block(x)  # eval: running statistics, torch's path
        block.train()
        with torch.no_grad():
            block(x)
        block(x.float())  # fp32 input
        block(x.contiguous())  # NCHW memory
        handle = block.bn.register_forward_hook(lambda *_: None)  # explain-style hooks see BN's output
        block(x)
        handle.remove()
    assert spy.calls == 1
    relu_first = ConvNormAct(8, 8, order="relu-conv-bn").to(memory_format=CL)
    leaky = ConvNormAct(8, 8, order="bn-relu-conv", act="leaky_relu").to(memory_format=CL)
    with torch.autocast("cpu", torch.bfloat16):
        relu_first(x), leaky(x)
    assert spy.calls == 1
    assert not bn_relu.usable(_bf16(1, 8, 1, 1), nn.BatchNorm2d(8), nn.ReLU())  # one value per channel
    assert not bn_relu.usable(x, nn.BatchNorm2d(8, momentum=None), nn.ReLU())  # cumulative average


def test_kernels_off_means_not_usable(monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    kernels.load.cache_clear()
    try:
        assert bn_relu.library() is None
        assert not bn_relu.usable(_bf16(2, 8, 4, 4), nn.BatchNorm2d(8), nn.ReLU())
    finally:
        monkeypatch.delenv("CNNLAB_KERNELS")
        kernels.load.cache_clear()


@needs_lib
def test_a_reloaded_library_gets_its_signatures_declared() -> None:
    kernels.load.cache_clear()  # a new CDLL object: without argtypes, ctypes would pass ints as C int
    lib = bn_relu.library()
    assert lib is not None and lib is kernels.load("bn_relu")
    assert lib.bn_relu_forward.argtypes[0] is ctypes.c_void_p and lib.bn_relu_stats.argtypes[1] is ctypes.c_int64


@needs_lib
def test_training_keeps_pytorchs_op_where_the_build_has_no_simd_code(monkeypatch) -> None:
    """The portable path is 7-14x slower than PyTorch's op on an AVX2 CPU: never routed to by default."""
    monkeypatch.setattr(bn_relu, "ROUTE_PORTABLE", False)

    class NoSimd:
        def bn_relu_has_simd(self) -> int:
            return 0

    assert not bn_relu.routed(NoSimd())
    assert bn_relu.routed(LIB) == bool(LIB.bn_relu_has_simd())
    monkeypatch.setattr(bn_relu, "ROUTE_PORTABLE", True)
    assert bn_relu.routed(NoSimd())
