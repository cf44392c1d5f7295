"""The depthwise 3x3 weight-gradient kernel (kernels/dw3x3.c): exact against aten, both C paths, and
SeparableConv's routing to it in CPU bf16 training only."""

from __future__ import annotations

import ctypes
import subprocess
import time

import pytest
import torch
from torch import nn

from cnnlab import kernels
from cnnlab.kernels import depthwise
from cnnlab.layers import SeparableConv

needs_kernel = pytest.mark.skipif(not depthwise.paths(), reason="dw3x3 kernel not built here")

# (N, C, H, W): C not a multiple of 16 or 32, H or W of 1 and 2, batch 1, a single channel
SHAPES = [(2, 32, 7, 9), (1, 19, 1, 1), (1, 40, 2, 2), (3, 64, 5, 1), (2, 48, 1, 6), (1, 100, 4, 3),
          (1, 1, 3, 2), (2, 16, 6, 5), (1, 33, 2, 8), (1, 8, 3, 3)]  # odd and even W, 1 to 9


@pytest.fixture(autouse=True)
def _fresh_load(monkeypatch):
    monkeypatch.setattr(depthwise, "MIN_PIXELS", 0)  # tiny test images take the kernel too
    kernels.load.cache_clear()
    yield
    kernels.load.cache_clear()


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x, g = (torch.randn(shape, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
            for _ in range(2))
    return x, g


def _reference(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """aten's weight gradient in fp32 on the same bf16 values."""
    c = x.shape[1]
    return torch.ops.aten.convolution_backward(g.float(), x.float(), torch.zeros(c, 1, 3, 3), None, [1, 1],
                                               [1, 1], [1, 1], False, [0, 0], c, [False, True, False])[1]


def _close(out: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert (out - ref).abs().max().item() <= rel * max(ref.abs().max().item(), 1e-6)


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", [*depthwise.PATHS, None])
def test_kernel_weight_gradient_matches_aten(shape, path) -> None:
    if path is not None and path not in depthwise.paths():
        pytest.skip(f"this CPU has no {path} path")
    x, g = _pair(shape)
    out = depthwise.depthwise3x3_weight_grad(x, g, path=path)
    _close(out, _reference(x, g), 1e-5)  # both accumulate the exact bf16 products in fp32


@needs_kernel
def test_kernel_splits_rows_over_threads_like_one_chunk() -> None:
    x, g = _pair((3, 40, 5, 4), seed=1)
    with_threads = depthwise.depthwise3x3_weight_grad(x, g)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = depthwise.depthwise3x3_weight_grad(x, g)
    finally:
        torch.set_num_threads(previous)
    _close(with_threads, alone, 1e-5)


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")
def test_build_without_avx512_runs_the_portable_path(tmp_path) -> None:
    """The #else branch: what a CPU without AVX-512 compiles (baseline x86-64 or any other -march)."""
    target = tmp_path / "dw3x3_plain.so"
    flags = ["-O2", "-fPIC", "-shared", "-std=c11"] + (["-march=x86-64"] if "x86" in
                                                          subprocess.run(["uname", "-m"], capture_output=True,
                                                                         text=True).stdout else [])
    subprocess.run([kernels._compiler(), *flags, "-o", str(target), str(kernels._SOURCES / "dw3x3.c")],
                   check=True, timeout=120)
    lib = kernels.declare_once(ctypes.CDLL(str(target)), depthwise._declare)
    assert depthwise.paths(lib) == ["portable"]
    x, g = _pair((2, 37, 4, 3), seed=2)
    partial = torch.empty(1, 9, 64)
    counter = torch.zeros(1, dtype=torch.int64)
    lib.dw3x3_wgrad(x.data_ptr(), g.data_ptr(), partial.data_ptr(), 4, 3, 37, counter.data_ptr(), 2 * 4, 1, 0, 0, 0)
    _close(partial[0, :, :37].t().reshape(37, 1, 3, 3), _reference(x, g), 1e-5)
    partial.fill_(float("nan"))
    lib.dw3x3_wgrad_portable(x.data_ptr(), g.data_ptr(), partial.data_ptr(), 4, 3, 37, 0, 0, 2 * 4)
    _close(partial[0, :, :37].t().reshape(37, 1, 3, 3), _reference(x, g), 1e-5)


@needs_kernel
def test_kernel_gives_the_same_bits_whichever_thread_claims_which_rows(monkeypatch) -> None:
    """Issue 14: threads claim work dynamically, yet the sum must not depend on who took what. A
    thread that stalls (as one sharing its core with torch's spinning OpenMP worker does) changes
    the claims; the bits must stay."""
    x, g = _pair((4, 64, 40, 6), seed=3)
    first = depthwise.depthwise3x3_weight_grad(x, g)
    real = kernels.parallel_chunks
    lib = depthwise._kernel_library()

    def stall_one(fn, total, *args, chunks=None):
        def slow_first(*a):  # the last three arguments are (chunk, start, end)
            if a[-3] == 0:
                time.sleep(0.01)
            return fn(*a)
        return real(slow_first, total, *args, chunks=chunks)

    monkeypatch.setattr(kernels, "parallel_chunks", stall_one)
    for _ in range(3):
        assert torch.equal(depthwise.depthwise3x3_weight_grad(x, g), first)
    assert lib is not None


@needs_kernel
def test_tensors_the_kernel_does_not_take_give_none() -> None:
    x, g = _pair((1, 8, 4, 4))
    assert depthwise.depthwise3x3_weight_grad(x.float(), g) is None
    assert depthwise.depthwise3x3_weight_grad(x.contiguous(), g.contiguous()) is None  # NCHW
    assert depthwise.depthwise3x3_weight_grad(x, g[:, :, :3]) is None


def _grads(conv: SeparableConv, x: torch.Tensor) -> list[torch.Tensor]:
    conv.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        y = conv(x)
    (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return [x.grad, conv.depthwise.weight.grad, conv.pointwise.weight.grad]


@needs_kernel
@pytest.mark.parametrize("channels", [24, 32])
def test_separable_conv_bf16_training_gradients_match_the_stock_path(channels, monkeypatch) -> None:
    torch.manual_seed(0)
    conv = SeparableConv(channels, 16).to(memory_format=torch.channels_last).train()
    x = torch.randn(2, channels, 9, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    calls = []
    real = depthwise.depthwise3x3_weight_grad
    monkeypatch.setattr(depthwise, "depthwise3x3_weight_grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    ours = _grads(conv, x)
    assert calls == [1]
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    kernels.load.cache_clear()
    stock = _grads(conv, x)
    assert calls == [1]  # switched off: PyTorch's path only
    assert all(t.dtype == torch.float32 for t in ours[1:])  # fp32 master weights keep fp32 gradients
    assert ours[0].dtype == stock[0].dtype == torch.bfloat16
    for a, b in zip(ours, stock, strict=True):
        _close(a.float(), b.float(), 1e-2)  # stock rounds the weight gradient to bf16, the kernel does not


@needs_kernel
def test_routing_keeps_the_stock_path_outside_bf16_training(monkeypatch) -> None:
    calls = []
    real = depthwise.depthwise3x3_weight_grad
    monkeypatch.setattr(depthwise, "depthwise3x3_weight_grad", lambda *a, **k: calls.append(1) or real(*a, **k))

    def run(conv: SeparableConv, x: torch.Tensor, *, autocast: bool = True, grad: bool = True) -> None:
        x = x.detach().requires_grad_(grad)
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
            y = conv(x)
        if grad:
            y.float().sum().backward()

    torch.manual_seed(0)
    x = torch.randn(1, 16, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last)
    conv = SeparableConv(16, 8).to(memory_format=torch.channels_last).train()
    run(conv, x)
    assert calls == [1]  # the qualifying case does reach the kernel
    run(conv.eval(), x)
    run(conv.train(), x, grad=False)
    run(conv, x.float(), autocast=False)  # fp32 training
    run(conv, x.contiguous())  # NCHW memory
    run(SeparableConv(16, 8, stride=2).train(), x)
    run(SeparableConv(16, 8, kernel_size=5).train(), x)
    run(SeparableConv(16, 8, dilation=2).train(), x)
    run(SeparableConv(16, 8, depth_multiplier=2).train(), x)
    monkeypatch.setattr(depthwise, "MIN_PIXELS", 6 * 6 + 1)  # small images: oneDNN wins
    run(conv, x)
    monkeypatch.setattr(depthwise, "MIN_PIXELS", 0)
    handle = conv.depthwise.register_forward_hook(lambda *_: None)  # explain's recorders rely on hooks
    run(conv, x)
    handle.remove()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    run(conv, x)
    assert calls == [1]


@needs_kernel
def test_frozen_weights_and_no_input_gradient() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.randn(1, 8, 5, 5).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    conv.weight.requires_grad_(False)
    depthwise.depthwise_conv3x3(x, conv.weight).float().sum().backward()
    assert x.grad is not None and conv.weight.grad is None
    conv.weight.requires_grad_(True)
    depthwise.depthwise_conv3x3(x.detach(), conv.weight).float().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
