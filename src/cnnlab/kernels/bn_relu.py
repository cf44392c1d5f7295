"""Fused training-mode BatchNorm2d -> ReLU for CPU bf16 channels_last training (bn_relu.c).

Why: at mini_xception's first stage (32 x 32ch x 176 x 176 bf16, 63 MB per tensor) BatchNorm and
ReLU are separate memory-bound passes; fused, the forward reads x twice and writes y once, and the
backward reads x and dy twice and writes dx once (benchmarks/NOTES-speed.md, attempt 19).

``bn_relu_train(x, bn)`` matches ``relu(bn(x))`` for an ``nn.BatchNorm2d`` in training mode: the
batch is normalised with its biased variance; ``running_mean`` / ``running_var`` (unbiased, factor
M / (M - 1)) are updated with the module's momentum and ``num_batches_tracked`` is incremented, as
torch does. ``usable(x, bn, act)`` says when a caller may use it; everything else keeps torch's path.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cnnlab import kernels

_P = ctypes.c_void_p
_I = ctypes.c_int64
_TAIL = [_I, _I, _I]  # chunk, start, end: the parallel_chunks convention

# Tensors below SMALL elements run on one thread (see _chunks): measured at batch 32, 256 x 11 x 11
# (1M elements) is faster on one thread, 512 x 11 x 11 (2M) on two (attempt 19).
SMALL = 1 << 20


def _declare(lib: ctypes.CDLL) -> None:
    lib.bn_relu_stats.argtypes = [_P, _I, _P, _P, *_TAIL]
    lib.bn_relu_forward.argtypes = [_P, _P, _P, _P, _I, *_TAIL]
    lib.bn_relu_backward_stats.argtypes = [_P, _P, _P, _P, _P, _I, _P, _P, *_TAIL]
    lib.bn_relu_backward_dx.argtypes = [_P, _P, _P, _P, _P, _P, _P, _I, *_TAIL]
    for fn in (lib.bn_relu_stats, lib.bn_relu_forward, lib.bn_relu_backward_stats, lib.bn_relu_backward_dx):
        fn.restype = None
    lib.bn_relu_finish_stats.argtypes = [_P, _P, _I, _I, _I, _P, _P, _P, _P, _P, ctypes.c_double,
                                         ctypes.c_double, _P]
    lib.bn_relu_finish_grads.argtypes = [_P, _P, _I, _I, _I, _P, _P]
    lib.bn_relu_finish_stats.restype = lib.bn_relu_finish_grads.restype = None
    lib.bn_relu_set_portable.argtypes, lib.bn_relu_set_portable.restype = [ctypes.c_int], None
    lib.bn_relu_has_simd.argtypes, lib.bn_relu_has_simd.restype = [], ctypes.c_int


def library() -> ctypes.CDLL | None:
    """The bn_relu kernels with their signatures declared, or None (CNNLAB_KERNELS=0, no compiler, a
    failed build). Follows ``kernels.load``'s cache, so ``kernels.load.cache_clear()`` re-decides it."""
    return kernels.library("bn_relu", _declare)


# The portable C path is there to check the AVX-512 one against. Training routes to it only on
# request: on a CPU without AVX-512 it is 7-14x slower than PyTorch's own ops (benchmarks/RESULTS.md,
# "Deterministic kernel sums", AMD Zen 3), so there the stock path runs. Tests set this to True.
ROUTE_PORTABLE = False


def routed(lib: ctypes.CDLL | None) -> bool:
    """True when training should send work to ``lib``: built, with SIMD code or ROUTE_PORTABLE."""
    return lib is not None and (bool(lib.bn_relu_has_simd()) or ROUTE_PORTABLE)


def usable(x: torch.Tensor, bn: nn.Module, act: nn.Module) -> bool:
    """True when ``act(bn(x))`` may run fused: training with grad enabled, CPU bf16 4-D channels_last
    input, an affine BatchNorm2d tracking running stats with a float momentum, a plain nn.ReLU, no
    hooks, not being traced by torch.compile, and the kernels built with SIMD code
    (see ``routed``)."""
    return (
        type(bn) is nn.BatchNorm2d and type(act) is nn.ReLU and not act.inplace
        and bn.training and torch.is_grad_enabled()
        and bn.affine and bn.track_running_stats and isinstance(bn.momentum, float)
        and bn.running_mean is not None and bn.running_mean.dtype == bn.running_var.dtype == torch.float32
        and bn.weight.dtype == bn.bias.dtype == torch.float32
        and all(t.is_contiguous() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))  # raw pointers
        and bn.weight.device.type == "cpu"
        and x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 4
        and x.shape[1] == bn.num_features
        and x.shape[0] * x.shape[2] * x.shape[3] > 1  # torch raises for one value per channel
        and x.is_contiguous(memory_format=torch.channels_last)
        and not torch.compiler.is_compiling()
        and not kernels.has_hooks(bn, act)
        and routed(library())
    )


def _chunks(x: torch.Tensor, rows: int) -> int:
    """Threads for a tensor: one below SMALL elements, where handing chunks to the pool costs more
    than the pass itself (attempt 19)."""
    return 1 if x.numel() < SMALL else kernels.chunk_count(rows)


class _BnRelu(torch.autograd.Function):
    """relu(batch_norm(x)) on bf16 NHWC rows; saves x and the per-channel [scale, shift, mean, invstd]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,  # noqa: ANN001
                running_mean: torch.Tensor, running_var: torch.Tensor, momentum: float,
                eps: float) -> torch.Tensor:
        lib = library()
        n, c, h, w = x.shape
        rows = n * h * w
        chunks = _chunks(x, rows)
        sums = torch.empty(2, chunks, c, dtype=torch.float64)
        s1, s2 = sums[0].data_ptr(), sums[1].data_ptr()
        kernels.parallel_chunks(lib.bn_relu_stats, rows, x.data_ptr(), c, s1, s2, chunks=chunks)
        stats = torch.empty(4, c)
        lib.bn_relu_finish_stats(s1, s2, chunks, c, rows, x.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                                 running_mean.data_ptr(), running_var.data_ptr(), momentum, eps,
                                 stats.data_ptr())
        y = torch.empty_like(x, memory_format=torch.channels_last)
        kernels.parallel_chunks(lib.bn_relu_forward, rows, x.data_ptr(), y.data_ptr(), stats[0].data_ptr(),
                                stats[1].data_ptr(), c, chunks=chunks)
        ctx.save_for_backward(x, stats)
        return y

    @staticmethod
    @once_differentiable  # the kernels' backward is not itself differentiable: double backward raises
    def backward(ctx, dy: torch.Tensor):  # noqa: ANN001, ANN205
        x, stats = ctx.saved_tensors
        lib = library()
        n, c, h, w = x.shape
        rows = n * h * w
        dy = dy.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        chunks = _chunks(x, rows)
        sums = torch.empty(2, chunks, c, dtype=torch.float64)
        s1, s2 = sums[0].data_ptr(), sums[1].data_ptr()
        scale, shift = stats[0].data_ptr(), stats[1].data_ptr()
        kernels.parallel_chunks(lib.bn_relu_backward_stats, rows, x.data_ptr(), dy.data_ptr(), scale, shift,
                                stats[2].data_ptr(), c, s1, s2, chunks=chunks)
        grads = torch.empty(4, c)
        lib.bn_relu_finish_grads(s1, s2, chunks, c, rows, stats.data_ptr(), grads.data_ptr())
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x, memory_format=torch.channels_last)
            kernels.parallel_chunks(lib.bn_relu_backward_dx, rows, x.data_ptr(), dy.data_ptr(), dx.data_ptr(),
                                    scale, shift, grads[2].data_ptr(), grads[3].data_ptr(), c, chunks=chunks)
        dw = grads[0] if ctx.needs_input_grad[1] else None
        db = grads[1] if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None, None


def bn_relu_train(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """``relu(bn(x))`` for a BatchNorm2d in training mode, fused; call only where ``usable`` is True.

    Updates ``bn``'s running statistics and ``num_batches_tracked`` like torch; returns bf16
    channels_last.
    """
    with torch.autocast("cpu", enabled=False):  # the per-channel math stays fp32/fp64
        y = _BnRelu.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps)
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return y
