"""Depthwise 3x3 convolution whose weight gradient runs in cnnlab's hand-written C kernel (dw3x3.c).

Why: in CPU bf16 training of the small Xception, oneDNN's depthwise 3x3 weight gradient runs at
2.6-6x its memory floor while its forward and data gradient are at theirs (benchmarks/NOTES-speed.md,
attempts 14, 17 and 18). So only the weight gradient is replaced: the forward is ``F.conv2d`` and the
data gradient aten's ``convolution_backward``, both oneDNN.

Scope: bf16 NHWC (channels_last) inputs, 3x3 kernel, stride 1, padding 1, dilation 1, one filter per
channel. ``use_kernel`` says whether a call qualifies; callers keep PyTorch's path otherwise.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cnnlab import kernels

# Images with fewer pixels (H * W) than this stay on oneDNN. Attempt 18 (benchmarks/NOTES-speed.md)
# measured the kernel faster at every mini_xception shape from 44x44 up (1.1-2.9x over repeated
# runs) and slower or even at 22x22 and 11x11 (0.7-1.0x with libgomp's default wait policy at
# 128x22x22, 256x11x11, 512x11x11; 256x22x22 varied 0.9-2.4x): short rows leave the per-row work
# and the ~0.07 ms of Python and thread-pool overhead per call too little to amortise over.
MIN_PIXELS = 32 * 32

_ARGTYPES = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
             ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]


# entry points by path name, and the bit of dw3x3_paths() that says a build has it
PATHS = {"portable": ("dw3x3_wgrad_portable", 0), "avx512": ("dw3x3_wgrad_avx512", 1),
         "avx512bf16": ("dw3x3_wgrad_avx512bf16", 2)}


def _declare(lib: ctypes.CDLL) -> None:
    """The C signatures of every path this build has (ctypes would otherwise pass ints as C int)."""
    lib.dw3x3_paths.argtypes, lib.dw3x3_paths.restype = [], ctypes.c_int
    for name, (symbol, bit) in PATHS.items():
        if name == "portable" or lib.dw3x3_paths() & bit:
            fn = getattr(lib, symbol)
            fn.argtypes, fn.restype = _ARGTYPES, None
    # the dynamic entry point: a shared tile counter, the row count and the tile count before
    # (chunk, start, end)
    lib.dw3x3_wgrad.argtypes = [*_ARGTYPES[:6], ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, *_ARGTYPES[6:]]
    lib.dw3x3_wgrad.restype = None


def _kernel_library() -> ctypes.CDLL | None:
    return kernels.library("dw3x3", _declare)


def paths(lib: ctypes.CDLL | None = None) -> list[str]:
    """The kernel paths compiled for this CPU ("portable", "avx512", "avx512bf16"), fastest last;
    empty when the kernels are off or could not be built."""
    lib = _kernel_library() if lib is None else lib
    if lib is None:
        return []
    bits = int(lib.dw3x3_paths())
    return [name for name, (_, bit) in PATHS.items() if name == "portable" or bits & bit]


def tile_count(rows: int) -> int:
    """How many fixed row ranges the dynamic entry point cuts ``rows`` into: 32 (4 per thread past 8
    threads) keeps a straggling thread's share small, and costs one 9 x C fp32 sum per tile."""
    return max(1, min(rows, max(32, 4 * torch.get_num_threads())))


def _channels_last_bf16(t: torch.Tensor) -> bool:
    return (t.dim() == 4 and t.dtype == torch.bfloat16 and t.device.type == "cpu"
            and t.is_contiguous(memory_format=torch.channels_last))


def depthwise3x3_weight_grad(x: torch.Tensor, g: torch.Tensor, *, path: str | None = None) -> torch.Tensor | None:
    """fp32 (C, 1, 3, 3) weight gradient of a depthwise 3x3 conv (stride 1, padding 1) with input ``x``
    and output gradient ``g``, both bf16 channels_last (N, C, H, W) of one shape; None when the kernel
    is unavailable or the tensors do not fit it (the caller then uses PyTorch's path).

    ``path`` forces one of ``paths()`` (for tests); default the fastest this CPU has.
    """
    lib = _kernel_library()
    if lib is None or x.shape != g.shape or not (_channels_last_bf16(x) and _channels_last_bf16(g)):
        return None
    n, c, h, w = x.shape
    if n * c * h * w == 0:
        return None
    rows = n * h
    chunks = kernels.chunk_count(rows)
    padded = (c + 31) // 32 * 32  # the kernel works on 32-channel blocks: see dw3x3.c
    if path is None:
        # fixed tiles, claimed dynamically: the sum depends on the tiles, never on which thread ran
        # which (dw3x3.c), so the same inputs give the same bits at the same thread count
        tiles = tile_count(rows)
        partial = torch.empty(tiles, 9, padded, dtype=torch.float32)
        counter = torch.zeros(1, dtype=torch.int64)  # tiles claimed so far, shared by the threads
        kernels.parallel_chunks(lib.dw3x3_wgrad, rows, x.data_ptr(), g.data_ptr(), partial.data_ptr(), h, w, c,
                                counter.data_ptr(), rows, tiles, chunks=chunks)
    else:
        partial = torch.empty(chunks, 9, padded, dtype=torch.float32)
        kernels.parallel_chunks(getattr(lib, PATHS[path][0]), rows, x.data_ptr(), g.data_ptr(),
                                partial.data_ptr(), h, w, c, chunks=chunks)
    total = partial[0] if partial.shape[0] == 1 else partial.sum(0)
    return total[:, :c].t().reshape(c, 1, 3, 3).contiguous()


class _DepthwiseConv3x3(torch.autograd.Function):
    """F.conv2d forward and oneDNN data gradient; the weight gradient from the C kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w = weight.to(x.dtype)  # fp32 master weights under autocast: the conv runs in x's dtype
        ctx.save_for_backward(x, w)
        ctx.weight_dtype, ctx.weight_stride = weight.dtype, weight.stride()
        return F.conv2d(x, w, padding=1, groups=x.shape[1])

    @staticmethod
    @once_differentiable  # the kernel's gradient has no graph: double backward must raise, not be silently wrong
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_w = depthwise3x3_weight_grad(x, g) if need_w else None
        # oneDNN for what the kernel does not cover: the data gradient always, the weight gradient when
        # the incoming gradient is not bf16 channels_last (it is in channels_last training)
        mask = [need_x, need_w and grad_w is None, False]
        grad_x = None
        if mask[0] or mask[1]:
            gx, gw, _ = torch.ops.aten.convolution_backward(
                g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], x.shape[1], mask)
            grad_x = gx if need_x else None
            if mask[1]:
                grad_w = gw
        if grad_w is not None:
            grad_w = grad_w.to(ctx.weight_dtype)
            if grad_w.stride() != ctx.weight_stride:
                # The kernel's (C, 1, 3, 3) is contiguous, a channels_last weight's strides differ in the
                # size-1 dim: autograd accepts that, but DDP's bucket views are strided like the weight
                # and it warns on every rank ("Grad strides do not match bucket view strides") and copies.
                grad_w = torch.empty_strided(grad_w.shape, ctx.weight_stride, dtype=grad_w.dtype).copy_(grad_w)
        return grad_x, grad_w


def depthwise_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise 3x3 conv (stride 1, padding 1, ``groups = C``) of ``x`` with ``weight`` (C, 1, 3, 3),
    equal to ``F.conv2d(x, weight.to(x.dtype), padding=1, groups=C)``, with the weight gradient from
    the hand-written kernel. Call it only where ``use_kernel`` says yes."""
    return _DepthwiseConv3x3.apply(x, weight)


def use_kernel(conv: torch.nn.Module, x: torch.Tensor) -> bool:
    """True when the depthwise ``conv`` applied to ``x`` should run through ``depthwise_conv3x3``:
    training with gradients, bf16 channels_last CPU input, a hook-free 3x3 / stride 1 / padding 1 /
    dilation 1 depthwise nn.Conv2d without bias, an image size the kernel wins at, not under
    torch.compile, and the kernel built. Everything else keeps PyTorch's path."""
    if not (conv.training and torch.is_grad_enabled() and isinstance(conv, torch.nn.Conv2d)):
        return False
    if not _channels_last_bf16(x) or x.shape[2] * x.shape[3] < MIN_PIXELS:
        return False
    c = x.shape[1]
    if not (conv.in_channels == conv.out_channels == conv.groups == c and conv.bias is None
            and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and conv.padding == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.padding_mode == "zeros"):
        return False
    if torch.compiler.is_compiling() or kernels.has_hooks(conv):
        return False
    return _kernel_library() is not None
