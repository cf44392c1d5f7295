"""Roofline floor of one mini_xception training step on this machine: how fast could it possibly be?

For every op of a training step (the lecture's small Xception, 180x180, batch 32, bf16 channels_last,
the settings `cnnlab train` uses) this counts the floating-point work and the bytes each op must move
through memory when the ops run one after another as PyTorch runs them, then prices each op at
`max(flops / peak, bytes / bandwidth)` with the peak and bandwidth measured here first (a bf16 3x3
conv and a large tensor copy). The sum is the fastest the step could be with every kernel at this
machine's roofline; a second figure fuses BatchNorm -> ReLU (the fusion the issue lists as a lever).
Then it times the real step (median of `--steps`, by keras_xception.py's cnnlab worker) for comparison.

    python benchmarks/roofline_xception.py [--steps 10]

Byte model per op (activations bf16, 2 bytes/element; I = input, O = output elements; weights are
small and ignored; the conv's own im2col or blocking traffic is not counted, so the floor is generous):
conv forward, backward-data and backward-weight each read one tensor and write or accumulate another
(2(I+O) each; the stem conv has no backward-data); training BatchNorm reads x for the statistics,
then reads x and writes y (fwd), and reads x and dy twice and writes dx (bwd); ReLU 2 passes
forward, 3 backward; max pool writes int64 indices forward and fills then scatters dx backward;
the residual add reads 2 and writes 1; the shortcut's input gradient is summed from two branches.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from keras_xception import run_row  # benchmarks/: the peer benchmark times the same step
from torch import nn

from cnnlab._runtime import tune_allocator
from cnnlab.layers import Add, MaxPoolSame
from cnnlab.models import create_model

SIZE, BATCH, BF16 = 180, 32, 2


def measure_peak() -> tuple[float, float]:
    """(bf16 3x3 conv FLOP/s, copy bandwidth in bytes/s) on all threads, best of 5."""
    x = torch.randn(64, 256, 28, 28).bfloat16().to(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).bfloat16().to(memory_format=torch.channels_last)
    flops = 2 * 64 * 256 * 28 * 28 * 256 * 9
    a = torch.empty(128 * 1024 * 1024, dtype=torch.bfloat16).fill_(1)
    b = torch.empty_like(a)
    conv_t, copy_t = [], []
    for _ in range(6):
        t = time.perf_counter()
        F.conv2d(x, w, padding=1)
        conv_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        b.copy_(a)
        copy_t.append(time.perf_counter() - t)
    return flops / min(conv_t[1:]), 2 * a.numel() * BF16 / min(copy_t[1:])


def op_costs(model: nn.Module, fuse_bn_relu: bool) -> list[tuple[str, float, float]]:
    """(name, flops, bytes) for the forward and backward of every leaf op, from one traced forward."""
    costs: list[tuple[str, float, float]] = []
    seen_input: dict[int, int] = {}  # tensors read by two ops get their gradients summed (residual fan-out)
    alive: list[torch.Tensor] = []  # keeps traced inputs alive so their ids are not reused

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        i, o = x.numel(), out.numel()
        alive.append(x)
        seen_input[id(x)] = seen_input.get(id(x), 0) + 1
        if seen_input[id(x)] == 2:  # the second reader of x: dx = dx_main + dx_shortcut
            costs.append(("grad-sum", 0.0, 3.0 * i * BF16))
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            flops = 2.0 * o * (module.in_channels // module.groups) * k
            passes = 2 if module.in_channels == 3 else 3  # fwd, bwd-weight (+ bwd-data)
            costs.append((f"conv{module.kernel_size[0]}x{module.kernel_size[1]} g{module.groups}",
                          passes * flops, passes * (i + o) * BF16))
        elif isinstance(module, nn.BatchNorm2d):
            costs.append(("batchnorm", 0.0, (3 * i + 5 * i) * BF16))
        elif isinstance(module, nn.ReLU):
            # Fused into the BN, it moves nothing of its own: the forward writes BN's output once, and
            # the backward recomputes the mask from x and the BN's scale and shift, which it reads anyway.
            costs.append(("relu", 0.0, 0.0 if fuse_bn_relu else (2 * i + 3 * i) * BF16))
        elif isinstance(module, MaxPoolSame):
            costs.append(("maxpool", 9.0 * o, (i + o) * BF16 + 8 * o + (2 * i + o) * BF16 + 8 * o))
        elif isinstance(module, Add):
            costs.append(("add", float(o), 3.0 * o * BF16))

    leaves = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, MaxPoolSame, Add))]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        model(torch.rand(BATCH, 3, SIZE, SIZE).to(memory_format=torch.channels_last))
    for h in handles:
        h.remove()
    costs.append(("input cast fp32->bf16", 0.0, BATCH * 3 * SIZE * SIZE * (4 + BF16)))
    return costs


def floor_seconds(costs: list[tuple[str, float, float]], peak: float, bandwidth: float) -> float:
    return sum(max(flops / peak, nbytes / bandwidth) for _, flops, nbytes in costs)


def measured_step(steps: int) -> float:
    """Median seconds of a cnnlab `auto` training step, timed by the peer benchmark's own worker in a
    fresh process (so it gets what the CLI sets before torch starts, and one definition of the step)."""
    result = run_row(sys.executable, "auto", {}, 3, steps)
    if "error" in result:
        raise SystemExit(f"timing the step failed: {result['error']}")
    return result["median_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    tune_allocator()
    peak, bandwidth = measure_peak()
    model = create_model("mini_xception", num_classes=1).to(memory_format=torch.channels_last)
    unfused, fused = op_costs(model, False), op_costs(model, True)
    floor, floor_fused = floor_seconds(unfused, peak, bandwidth), floor_seconds(fused, peak, bandwidth)
    flops = sum(f for _, f, _ in unfused)
    nbytes = sum(b for _, _, b in unfused)
    step = measured_step(args.steps)
    print(f"threads {torch.get_num_threads()}: bf16 conv peak {peak / 1e12:.2f} TFLOP/s, copy bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s")
    print(f"one step: {flops / 1e9:.0f} GFLOP (all at peak: {flops / peak:.3f} s), {nbytes / 1e9:.2f} GB moved "
          f"(all at bandwidth: {nbytes / bandwidth:.3f} s)")
    by_kind: dict[str, float] = {}
    for name, f, b in unfused:
        by_kind[name] = by_kind.get(name, 0.0) + max(f / peak, b / bandwidth)
    for name, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {seconds * 1e3:7.1f} ms at its roofline")
    print(f"roofline floor, ops as PyTorch runs them: {floor:.3f} s/step = {BATCH / floor:.0f} img/s")
    print(f"roofline floor, BN+ReLU fused:           {floor_fused:.3f} s/step = {BATCH / floor_fused:.0f} img/s")
    print(f"measured (cnnlab auto, median of {args.steps}): {step:.3f} s/step = {BATCH / step:.0f} img/s "
          f"= {floor / step:.0%} of the unfused floor's speed")


if __name__ == "__main__":
    main()
