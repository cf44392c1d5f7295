"""What deterministic sums cost the depthwise 3x3 weight-gradient kernel (issue 14), side by side.

Before: each thread claimed rows from a shared counter and summed into its own partial buffer, so
which rows landed in which partial (and the order of the fp32 additions) changed from call to call.
After: the rows are cut into fixed tiles; threads still claim tiles dynamically, but each tile's sum
goes to its own slot and the slots are added in tile order, so the bits never depend on the threads.

This script compiles the kernel source of ``--before`` (a git revision; default the commit before the
change) next to today's, and times both on the same bf16 channels_last batches at mini_xception's
shapes where cnnlab routes to the kernel (H*W >= MIN_PIXELS), interleaved round by round (median ms
of ``--calls`` calls, best of ``--rounds`` rounds). It also calls each ``--repeats`` times on the same
inputs and counts distinct results: the old kernel's count above 1 is the non-determinism that made
two identical training runs differ.

    python benchmarks/dw_determinism_bench.py [--before e04933c~1] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnlab._runtime import tune_openmp_env

tune_openmp_env()  # as the CLI does, before torch loads

import torch  # noqa: E402

from cnnlab import kernels  # noqa: E402
from cnnlab.kernels import depthwise  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling benchmark
from kernels_bench import DW_SHAPES, batch, median_ms  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KERNELS = "src/cnnlab/kernels"


def build_before(revision: str) -> ctypes.CDLL:
    """The dw3x3 library as compiled from ``revision``'s source (and its headers)."""
    folder = Path(tempfile.mkdtemp(prefix="dw3x3-before-"))
    for name in ("dw3x3.c", "bf16.h"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{KERNELS}/{name}"], check=True,
                              capture_output=True, text=True).stdout
        (folder / name).write_text(text)
    lib = ctypes.CDLL(str(kernels._build("dw3x3_before", folder / "dw3x3.c", kernels._compiler())))
    a = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3
    lib.dw3x3_wgrad.argtypes = [*a, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_int64] * 3]
    lib.dw3x3_wgrad.restype = None
    return lib


def before_wgrad(lib: ctypes.CDLL, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The old entry point's call, as depthwise.py made it before the change."""
    n, c, h, w = x.shape
    rows, chunks, padded = n * h, kernels.chunk_count(n * h), (c + 31) // 32 * 32
    partial = torch.empty(chunks, 9, padded, dtype=torch.float32)
    counter = torch.zeros(1, dtype=torch.int64)
    kernels.parallel_chunks(lib.dw3x3_wgrad, rows, x.data_ptr(), g.data_ptr(), partial.data_ptr(), h, w, c,
                            counter.data_ptr(), rows, chunks=chunks)
    total = partial[0] if chunks == 1 else partial.sum(0)
    return total[:, :c].t().reshape(c, 1, 3, 3).contiguous()


def distinct(fn, repeats: int) -> int:  # noqa: ANN001
    results: list[torch.Tensor] = []
    for _ in range(repeats):
        r = fn()
        if not any(torch.equal(r, seen) for seen in results):
            results.append(r)
    return len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e04933c~1", help="git revision of the old kernel")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not depthwise.paths():
        raise SystemExit("the dw3x3 kernel cannot be built here (no C compiler, or CNNLAB_KERNELS=0)")
    old = build_before(args.before)
    print(f"dw3x3 weight gradient, batch 32 bf16 channels_last, {args.threads} threads, path "
          f"{depthwise.paths()[-1]}; median ms of {args.calls} calls, best of {args.rounds} interleaved rounds\n")
    print("| shape (C x H x W) | before (dynamic partials) | after (fixed tiles) | after / before | "
          f"distinct results in {args.repeats} calls, before / after |")
    print("|---|---|---|---|---|")
    ratios = []
    for c, s in [(c, s) for c, s in DW_SHAPES if s * s >= depthwise.MIN_PIXELS]:
        x, g = batch(c, s), batch(c, s, 1)
        runs = {"before": lambda x=x, g=g: before_wgrad(old, x, g),
                "after": lambda x=x, g=g: depthwise.depthwise3x3_weight_grad(x, g)}
        best = {k: float("inf") for k in runs}
        for _ in range(args.rounds):
            for k, fn in runs.items():
                best[k] = min(best[k], median_ms(fn, args.calls))
        assert torch.allclose(runs["before"](), runs["after"](), rtol=1e-3, atol=1e-2), "the two kernels disagree"
        counts = [distinct(fn, args.repeats) for fn in runs.values()]
        ratios.append(best["after"] / best["before"])
        print(f"| {c}x{s}x{s} | {best['before']:.2f} | {best['after']:.2f} | {ratios[-1]:.3f} | "
              f"{counts[0]} / {counts[1]} |")
    geo = torch.tensor(ratios).log().mean().exp().item()
    print(f"\ngeometric mean after / before: {geo:.3f}")


if __name__ == "__main__":
    main()
