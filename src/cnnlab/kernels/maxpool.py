"""Keras 'same' max pooling for CPU bf16 channels_last training, forward and backward (maxpool.c).

Why: in a mini_xception training step PyTorch's CPU max pool (kernel 3, stride 2) on bf16
channels_last runs far from its memory floor (32ch x 176^2: forward 25 ms, backward 16.5 ms where
reading the input takes ~2 ms). The kernel writes y and a one-byte argmax per output; the backward
gathers, for each input element, dy of the windows whose argmax points at it, so dx is written once
(no zero fill, no scatter races) and threads split image rows (benchmarks/NOTES-speed.md, attempt 21).

``max_pool_same(x, k, s, pads, out)`` matches ``MaxPoolSame`` (torch's max pool with TF-aligned
windows, padding = -inf): ties keep the first max in window scan order, a NaN in a window wins.
``usable(x, module)`` says when a caller may use it; everything else keeps torch's path.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cnnlab import kernels

_P = ctypes.c_void_p
_I = ctypes.c_int64

# Largest pooling window side: the argmax ky * k + kx must fit a byte, and the gather backward visits
# ceil(k / s)^2 windows per input element.
MAX_KERNEL = 8

# Tensors below SMALL input elements run on one thread, where handing chunks to the pool costs more
# than the pass itself (attempt 21).
SMALL = 1 << 20


def _declare(lib: ctypes.CDLL) -> None:
    geometry = [_I] * 9  # H, W, C, k, s, pt, pl, OH, OW
    lib.maxpool_forward.argtypes = [_P, _P, _P, *geometry, _I, _I, _I]
    lib.maxpool_backward.argtypes = [_P, _P, _P, *geometry, _I, _I, _I]
    lib.maxpool_forward.restype = lib.maxpool_backward.restype = None
    lib.maxpool_set_portable.argtypes, lib.maxpool_set_portable.restype = [ctypes.c_int], None
    lib.maxpool_has_simd.argtypes, lib.maxpool_has_simd.restype = [], ctypes.c_int


def library() -> ctypes.CDLL | None:
    """The maxpool kernels with their signatures declared, or None (CNNLAB_KERNELS=0, no compiler, a
    failed build). Follows ``kernels.load``'s cache, so ``kernels.load.cache_clear()`` re-decides it."""
    return kernels.library("maxpool", _declare)


# The portable C path is there to check the AVX-512 one against. Training routes to it only on
# request: on a CPU without AVX-512 it is 7-14x slower than PyTorch's own ops (benchmarks/RESULTS.md,
# "Deterministic kernel sums", AMD Zen 3), so there the stock path runs. Tests set this to True.
ROUTE_PORTABLE = False


def routed(lib: ctypes.CDLL | None) -> bool:
    """True when training should send work to ``lib``: built, with SIMD code or ROUTE_PORTABLE."""
    return lib is not None and (bool(lib.maxpool_has_simd()) or ROUTE_PORTABLE)


def usable(x: torch.Tensor, module: nn.Module, kernel_size: int) -> bool:
    """True when ``module``'s 2-D 'same' max pool of ``x`` may run on the kernels: training with grad
    enabled, CPU bf16 4-D channels_last input, kernel <= MAX_KERNEL, no hooks, not being traced by
    torch.compile, and the kernels built with SIMD code
    (see ``routed``)."""
    return (
        module.training and torch.is_grad_enabled()
        and x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 4
        and 1 <= kernel_size <= MAX_KERNEL
        and x.is_contiguous(memory_format=torch.channels_last)
        and not torch.compiler.is_compiling()
        and not kernels.has_hooks(module)
        and routed(library())
    )


def _chunks(x: torch.Tensor, rows: int) -> int:
    """Threads for a tensor: one below SMALL elements (attempt 21)."""
    return 1 if x.numel() < SMALL else kernels.chunk_count(rows)


class _MaxPoolSame(torch.autograd.Function):
    """Max pool of bf16 NHWC rows; saves the uint8 argmax (ky * k + kx) per output element."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int, pt: int, pl: int, oh: int,  # noqa: ANN001
                ow: int) -> torch.Tensor:
        lib = library()
        n, c, h, w = x.shape
        y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
        arg = torch.empty((n, oh, ow, c), dtype=torch.uint8)
        geometry = (h, w, c, k, s, pt, pl, oh, ow)
        if y.numel():
            kernels.parallel_chunks(lib.maxpool_forward, n * oh, x.data_ptr(), y.data_ptr(),
                                    arg.data_ptr(), *geometry, chunks=_chunks(x, n * oh))
        ctx.save_for_backward(arg)
        ctx.geometry, ctx.batch = geometry, n
        return y

    @staticmethod
    @once_differentiable  # the kernels' backward is not itself differentiable: double backward raises
    def backward(ctx, dy: torch.Tensor):  # noqa: ANN001, ANN205
        (arg,) = ctx.saved_tensors
        lib = library()
        h, w, c = ctx.geometry[:3]
        n = ctx.batch
        dy = dy.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        dx = torch.empty((n, c, h, w), dtype=torch.bfloat16, memory_format=torch.channels_last)
        if dx.numel():
            kernels.parallel_chunks(lib.maxpool_backward, n * h, dy.data_ptr(), arg.data_ptr(),
                                    dx.data_ptr(), *ctx.geometry, chunks=_chunks(dx, n * h))
        return dx, None, None, None, None, None, None


def max_pool_same(x: torch.Tensor, kernel_size: int, stride: int, pads: tuple[int, int],
                  out: tuple[int, int]) -> torch.Tensor:
    """Max pool of a bf16 channels_last ``x`` with windows starting at ``i * stride - pad`` (pads =
    (top, left)) and ``out`` = (OH, OW) outputs, outside positions counting as -inf; call only where
    ``usable`` is True. Returns bf16 channels_last."""
    with torch.autocast("cpu", enabled=False):
        return _MaxPoolSame.apply(x, kernel_size, stride, pads[0], pads[1], out[0], out[1])
