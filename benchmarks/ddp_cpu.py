"""Data-parallel training on one CPU machine: images/s with 2 torchrun processes vs 1 process.

Each configuration trains the same small model on builtin:shapes through the real CLI
(`torchrun -m cnnlab train ...`) and reads images/s from the run's metrics.jsonl (every epoch after
the first, which pays for start-up). The machine's cores are split fairly: 1 process x N threads
against N processes x 1 thread, plus 1 process x 1 thread as the baseline.

    python benchmarks/ddp_cpu.py                       # prints a Markdown table
    python benchmarks/ddp_cpu.py --epochs 3 --images 2000 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, threads: int, args: argparse.Namespace, out: Path) -> float:
    """Train once with ``nproc`` processes of ``threads`` threads each; mean images/s after epoch 1."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "cnnlab", "train", "classify", "--data", f"builtin:shapes?n={args.images}&size={args.size}",
           "--model", "mini_xception", "--model-arg", f"widths={json.dumps(args.widths)}",
           "--out", str(out), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--precision", args.precision, "--threads", str(threads), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["images_per_s"] for r in rows[1:] or rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--widths", type=json.loads, default=[32, 64])
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = [(1, 1), (1, cores), (cores, 1)] if cores > 1 else [(1, 1)]
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, python {platform.python_version()}")
    print(f"model mini_xception widths {args.widths}, builtin:shapes {args.images} images {args.size}x{args.size}, "
          f"batch {args.batch_size}/process, {args.precision}, {args.epochs} epochs\n")
    print("| processes x threads | images/s (all processes) |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for nproc, threads in configs:
            ips = run(nproc, threads, args, Path(tmp) / f"p{nproc}t{threads}")
            print(f"| {nproc} x {threads} | {ips:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
