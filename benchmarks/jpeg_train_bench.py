"""End to end: training on RGB pixels against training on JPEG DCT coefficients (issue 13b), one run.

Trains recipe ``catsdogs-rgb`` (mini_xception on decoded pixels, --fit crop) and ``catsdogs-dct``
(mini_xception_dct on the files' coefficients, --input dct) on the same folder of original JPEGs with
the same split, crop, schedule and augmentation, one after the other, and prints for each: the time
to read the data, training images/s (the median epoch), validation top-1 of the last epoch, and the
DCT / RGB ratios. Then it says where the time goes: forward + backward of one training batch of the
RGB model, of its stem and first two stages alone (the part the coefficients replace), and of the
DCT model.

    python benchmarks/jpeg_train_bench.py [--data DIR] [--epochs N] [--threads 2] [--out runs/jpeg-bench]

The runs stay in --out (eval them on other photos: ``cnnlab eval OUT/dct --data PHOTOS``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from cnnlab._runtime import tune_openmp_env

tune_openmp_env()  # as the CLI does, before torch loads

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_runs import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "cats_vs_dogs"


def train(recipe: str, data: str, out: Path, epochs: int | None, threads: int) -> dict:
    from cnnlab.data import load_data
    from cnnlab.train import TrainConfig, fit
    from cnnlab.train.recipes import get_recipe

    overrides = get_recipe(recipe)
    if epochs:
        overrides["epochs"] = epochs
    start = time.perf_counter()  # the read alone, as fit does it
    load_data(data, "classify", val_split=overrides["val_split"], image_size=overrides["image_size"],
              options=overrides["data_options"])
    read_s = time.perf_counter() - start
    fit(TrainConfig(task="classify", data=data, out=str(out), recipe=recipe, threads=threads, **overrides),
        progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"read_s": read_s, "rate": statistics.median(r["images_per_s"] for r in rows),
            "top1": rows[-1]["val_top1"], "epochs": len(rows), "train_s": sum(r["seconds"] for r in rows)}


def step_seconds(model: torch.nn.Module, x: torch.Tensor, rounds: int = 3) -> float:
    """Best-of-rounds seconds of forward + backward of ``model`` on ``x``."""
    model.train()
    best = float("inf")
    for _ in range(rounds + 1):
        start = time.perf_counter()
        model(x).float().sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def where_time_goes(batch: int = 32, size: int = 224) -> list[tuple[str, float]]:
    from torch import nn

    from cnnlab.models import create_model

    torch.manual_seed(0)
    rgb = create_model("mini_xception", num_classes=1).to(memory_format=torch.channels_last)
    dct = create_model("mini_xception_dct", num_classes=1).to(memory_format=torch.channels_last)
    early = nn.Sequential(rgb.rescale, rgb.stem, rgb.stages[0], rgb.stages[1])
    x_rgb = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    x_dct = torch.randn(batch, 384, size // 16, size // 16).contiguous(memory_format=torch.channels_last)
    return [("mini_xception (RGB), whole", step_seconds(rgb, x_rgb)),
            ("  its stem + stages 1-2 (32, 64 ch)", step_seconds(early, x_rgb)),
            ("mini_xception_dct, whole", step_seconds(dct, x_dct))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(PHOTOS))
    parser.add_argument("--epochs", type=int, help="override the recipes' epochs (quick checks)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="runs/jpeg-bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = {}
    for name, recipe in (("rgb", "catsdogs-rgb"), ("dct", "catsdogs-dct")):
        results[name] = train(recipe, args.data, out / name, args.epochs, args.threads)
    rgb, dct = results["rgb"], results["dct"]
    print(f"data {args.data}; CPU {cpu_name()}; {args.threads} threads; {rgb['epochs']} epochs each")
    print(f"{'':6s} {'read s':>7s} {'train img/s':>12s} {'train s':>8s} {'val top-1':>10s}")
    for name, r in results.items():
        print(f"{name:6s} {r['read_s']:7.1f} {r['rate']:12.1f} {r['train_s']:8.0f} {r['top1']:10.4f}")
    print(f"DCT / RGB: training {dct['rate'] / rgb['rate']:.2f}x images/s, reading {rgb['read_s'] / dct['read_s']:.2f}x "
          f"faster, top-1 {100 * (dct['top1'] - rgb['top1']):+.1f} points")
    print("where the time goes (forward + backward, batch 32, 224 px, fp32, best of 3):")
    for label, seconds in where_time_goes():
        print(f"  {label:38s} {seconds * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
