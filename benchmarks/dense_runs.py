"""Segmentation and super-resolution runs side by side: parameters, CPU inference time per megapixel,
the run's validation metrics and its baseline, in one table.

Usage (after training with the recipes in the README):
    python benchmarks/dense_runs.py runs/sr-edsr runs/sr-espcn runs/camvid runs/membrane

Inference is timed in fp32 (eval mode, no_grad) on one mid-grey input of 256x256 model-input pixels
per run, after one warm-up pass, median of ``--repeats``; ms per megapixel counts the output pixels
(super-resolution) or input pixels (segmentation). Metrics are the last epoch's validation metrics
in metrics.jsonl (the run's own held-out split).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def ms_per_megapixel(run, side: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    x = torch.full((1, run.in_channels, side, side), 0.5)
    with torch.no_grad():
        out = run.model(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = run.model(x)
            times.append(time.perf_counter() - start)
    pixels = out.shape[-2] * out.shape[-1] if run.task.writes_images and out.shape[1] == run.in_channels else side * side
    return statistics.median(times) * 1000 / (pixels / 1e6)


def main() -> None:
    from cnnlab.rundir import load_run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--side", type=int, default=256, help="model-input side in pixels for timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| run | task | model | params | ms / MP (fp32) | validation | baseline | train time |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.runs:
        run = load_run(path)
        params = sum(p.numel() for p in run.model.parameters())
        last = run.history[-1]
        metric = run.task.primary_metric
        shown = f"{metric} {last.get('val_' + metric, float('nan')):.4f}"
        if "val_ssim" in last:
            shown += f", ssim {last['val_ssim']:.4f}"
        if "val_pixel_acc" in last:
            shown += f", pixel_acc {last['val_pixel_acc']:.4f}"
        base = last.get(f"val_baseline_{metric}")
        baseline = f"bicubic {base:.4f}" if base is not None else "-"
        minutes = sum(r["seconds"] for r in run.history) / 60
        print(f"| {path.name} | {run.config['task']} | {run.config['model']['name']} | {params:,} | "
              f"{ms_per_megapixel(run, args.side, args.repeats):.0f} | {shown} | {baseline} | {minutes:.1f} min |")


if __name__ == "__main__":
    main()
