"""cnnlab's hand-written CPU kernels against the PyTorch ops they replace, at mini_xception's shapes.

Each row times, on the same bf16 channels_last batch of 32 (2 threads by default, heap warmed,
interleaved rounds, median ms): the fused BatchNorm -> ReLU forward + backward against
`relu(bn(x))` under autocast; the depthwise 3x3 weight gradient against oneDNN's (aten
`convolution_backward`, weight only); 'same' max pooling (3, stride 2) forward + backward against
`MaxPoolSame` on PyTorch's op. NOTES-speed.md attempts 18, 19 and 21 were taken with one-off
versions of this; the kernels' routing (which shapes stay on PyTorch) follows from such tables.

    python benchmarks/kernels_bench.py [--rounds 3] [--calls 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from cnnlab._runtime import tune_allocator, tune_openmp_env

tune_openmp_env()  # what the CLI does: libgomp reads it when torch loads, so before the import below

import torch  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.kernels import bn_relu, depthwise  # noqa: E402
from cnnlab.layers import MaxPoolSame  # noqa: E402

BATCH = 32
# (channels, size) of the tensors each op sees in mini_xception at 180x180
BN_SHAPES = [(32, 176), (32, 88), (64, 88), (64, 44), (128, 44), (128, 22), (256, 22), (256, 11), (512, 11)]
DW_SHAPES = BN_SHAPES
POOL_SHAPES = [(32, 176), (64, 88), (128, 44), (256, 22), (512, 11)]


def batch(c: int, s: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, c, s, s, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)


def median_ms(fn, calls: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def bn_relu_pair(c: int, s: int) -> tuple:
    x, dy = batch(c, s).requires_grad_(), batch(c, s, 1)
    bn = nn.BatchNorm2d(c).train()

    def stock() -> None:
        with torch.autocast("cpu", torch.bfloat16):
            y = torch.relu(bn(x))
        y.backward(dy)

    def kernel() -> None:
        bn_relu.bn_relu_train(x, bn).backward(dy)

    return stock, kernel, bn_relu.usable(x, bn, nn.ReLU())


def depthwise_pair(c: int, s: int) -> tuple:
    x, g = batch(c, s), batch(c, s, 1)
    w = torch.randn(c, 1, 3, 3).bfloat16()

    def stock() -> None:
        torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], c,
                                            [False, True, False])

    return stock, lambda: depthwise.depthwise3x3_weight_grad(x, g), bool(depthwise.paths())


def maxpool_pair(c: int, s: int) -> tuple:
    x = batch(c, s).requires_grad_()
    pool = MaxPoolSame(3, 2)
    dy = batch(c, -(-s // 2), 1)

    def run(training: bool) -> None:  # eval mode takes PyTorch's op, training mode the kernel
        pool.train(training)
        pool(x).backward(dy)

    from cnnlab.kernels import maxpool

    return (lambda: run(False)), (lambda: run(True)), maxpool.library() is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=7)
    args = ap.parse_args()
    tune_allocator()
    rows = [(f"bn+relu fwd+bwd {c}x{s}x{s}", bn_relu_pair(c, s)) for c, s in BN_SHAPES]
    rows += [(f"depthwise wgrad {c}x{s}x{s}", depthwise_pair(c, s)) for c, s in DW_SHAPES]
    rows += [(f"maxpool fwd+bwd {c}x{s}x{s}", maxpool_pair(c, s)) for c, s in POOL_SHAPES]
    if not all(ok for _, (_, _, ok) in rows):
        raise SystemExit("cnnlab's kernels are not built here (no C compiler, or CNNLAB_KERNELS=0)")
    best: dict[str, list[float]] = {}
    for _ in range(args.rounds):  # interleaved: a burst of other load hurts both sides alike
        for name, (stock, kernel, _) in rows:
            pair = [median_ms(stock, args.calls), median_ms(kernel, args.calls)]
            best[name] = [min(a, b) for a, b in zip(best.get(name, pair), pair, strict=True)]
    print(f"batch {BATCH}, bf16 channels_last, {torch.get_num_threads()} threads, median ms, best of "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'op and shape':34s} {'pytorch':>9s} {'cnnlab':>9s} {'speed-up':>9s}")
    for name, (stock_ms, kernel_ms) in best.items():
        print(f"{name:34s} {stock_ms:9.2f} {kernel_ms:9.2f} {stock_ms / kernel_ms:8.2f}x")


if __name__ == "__main__":
    main()
