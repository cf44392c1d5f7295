"""Numeric precision and memory format for training and inference, behind one small object.

The loop calls the same five methods whatever the precision (nanoGPT's pattern: a no-op scaler and a
null autocast context when disabled), so it has no precision branches. ``auto`` picks bf16 where the
hardware runs it natively (AMX / AVX-512 BF16 CPUs, Ampere and newer GPUs) and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import CnnlabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Why autocast and not bf16 weights: on the benchmark CPU (AVX-512 BF16, 2 cores) a training step with
# bf16 weights and activations plus fp32 master weights ran at the same speed as autocast (mini_xception
# 21.0 vs 21.3 img/s per core, cifar_fast 259 vs 256): the casts autocast adds are ~1% of the step once
# the activations are channels_last, so the simpler scheme stays (benchmarks/NOTES-speed.md).


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has AMX or AVX-512 BF16 (where oneDNN's bf16 convolutions are fast)."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" amx_bf16", " avx512_bf16"))


def resolve_precision(requested: str, device: torch.device) -> str:
    """Map 'auto' to the fastest precision the device runs natively; validate the others."""
    if requested not in PRECISIONS:
        raise CnnlabError(f"unknown precision {requested!r}; choose from: {', '.join(PRECISIONS)}")
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise CnnlabError("--precision fp16 needs a GPU; use bf16 (or auto) on a CPU")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


@dataclass
class Precision:
    """Autocast, loss scaling and memory format for one device and precision."""

    name: str
    device: torch.device
    channels_last: bool = True
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        # fp16 needs loss scaling; bf16 and fp32 do not, and a disabled scaler is a no-op.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model to the device (and channels_last for 4D convs); weights stay fp32.

        On a CPU this also keeps freed memory in the process (``cnnlab._runtime.tune_allocator``):
        without it every step page-faults its ~100 MB of activations back in, which cost 40% of a
        mini_xception step on the benchmark machine. Numerics are unchanged.
        """
        if self.device.type == "cpu":
            from cnnlab._runtime import tune_allocator

            tune_allocator()
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Move an input batch to the device in the model's memory format."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()


def make_precision(requested: str, device: torch.device | str, channels_last: bool = True) -> Precision:
    """The Precision object for a request such as 'auto' on a device such as 'cpu' or 'cuda:0'."""
    device = torch.device(device)
    return Precision(resolve_precision(requested, device), device, channels_last)


#: what inference's --precision accepts: 'run' is the precision the run trained in, resolved here
INFERENCE_PRECISIONS = ("run", *PRECISIONS)

# Pixels per inference batch: small batches keep the activations in cache. Measured forward passes on
# a 2-core Zen 3 (fp32, channels_last, benchmarks/eval_bench.py): mini_xception at 128 px ran ~2x
# faster at batch 16-32 than at 256, resnet20 at 32 px best near 256; 2**18 pixels gives 16 and 256.
BATCH_PIXELS = 2**18


def inference_precision(requested: str, trained: str, device: torch.device | str, exact: bool = False) -> Precision:
    """The Precision for inference with a run trained in ``trained`` ('auto', 'bf16', ...).

    ``requested`` 'run' uses the run's own precision as it resolves on this device. Inference is
    channels_last even in fp32 on a CPU: training avoids that only for a weight-gradient crash in
    oneDNN, and an inference forward pass computes no weight gradient (2x faster for mini_xception).
    ``exact`` (tasks scored on 8-bit levels, ``Task.eval_fp32``) keeps fp32 whatever is requested.
    """
    if requested not in INFERENCE_PRECISIONS:
        raise CnnlabError(f"--precision {requested!r} is not one of: {', '.join(INFERENCE_PRECISIONS)}")
    device = torch.device(device)
    name = resolve_precision(trained if requested == "run" else requested, device)
    return Precision("fp32" if exact else name, device, channels_last=True)


def inference_batch(input_size: tuple[int, ...], requested: int | None = None) -> int:
    """``requested``, else a batch of about ``BATCH_PIXELS`` pixels of ``input_size`` (1 to 256)."""
    if requested is not None:
        if requested < 1:
            raise CnnlabError(f"--batch-size must be at least 1, got {requested}")
        return requested
    pixels = 1
    for s in input_size:
        pixels *= int(s)
    return max(1, min(256, 2 ** max(0, (BATCH_PIXELS // max(pixels, 1)).bit_length() - 1)))
