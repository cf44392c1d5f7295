"""End to end: training on RGB pixels against training on JPEG DCT coefficients (issue 13b), one run.

Trains recipe ``catsdogs-rgb`` (mini_xception on decoded pixels, --fit crop) and ``catsdogs-dct``
(mini_xception_dct on the files' coefficients, --input dct) on the same folder of original JPEGs with
the same split, crop, schedule and augmentation, one after the other, and prints for each: the time
to read the data, training images/s (the median epoch), validation top-1 of the last epoch, and the
DCT / RGB ratios. Then it says where the time goes: forward + backward of one training batch of the
RGB model, of its stem and first two stages alone (the part the coefficients replace), and of the
DCT model.

    python benchmarks/jpeg_train_bench.py [--data DIR] [--epochs N] [--threads 2] [--out runs/jpeg-bench]
                                          [--seeds 0,1,2] [--inputs rgb,dct] [--no-profile]

``--seeds`` repeats the pair with other seeds; a seed picks both the split and the initial weights, so
each seed is a new random 80/20 split with RGB and DCT on the same one (a paired comparison). Every
run lands in OUT/{rgb,dct}-seedK and the table covers every finished run found there, so several
processes (say one per seed, ``--threads 1`` each) can share one --out, and the last one to finish
prints the whole table. The runs stay in --out (``cnnlab eval OUT/dct-seed0 --data PHOTOS``).
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


RECIPES = {"rgb": "catsdogs-rgb", "dct": "catsdogs-dct"}


def train(recipe: str, data: str, out: Path, epochs: int | None, threads: int, seed: int) -> None:
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
    fit(TrainConfig(task="classify", data=data, out=str(out), recipe=recipe, threads=threads, seed=seed,
                    **overrides), progress=False)
    (out / "bench.json").write_text(json.dumps({"read_s": read_s, "threads": threads, "seed": seed}))


def finished_runs(out: Path) -> dict[tuple[str, int], dict]:
    """(input, seed) -> figures of every run in ``out`` that the benchmark finished."""
    runs = {}
    for bench in sorted(out.glob("*-seed*/bench.json")):
        name, seed = bench.parent.name.split("-seed")
        rows = [json.loads(line) for line in (bench.parent / "metrics.jsonl").read_text().splitlines()]
        runs[name, int(seed)] = {**json.loads(bench.read_text()), "epochs": len(rows),
                                 "rate": statistics.median(r["images_per_s"] for r in rows),
                                 "top1": rows[-1]["val_top1"], "best": max(r["val_top1"] for r in rows),
                                 "train_s": sum(r["seconds"] for r in rows)}
    return runs


def report(runs: dict[tuple[str, int], dict]) -> None:
    print(f"{'run':12s} {'threads':>7s} {'read s':>7s} {'train img/s':>12s} {'train s':>8s} {'val top-1':>10s} {'best':>7s}")
    for (name, seed), r in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0] != "rgb")):
        print(f"{name}-seed{seed:<4d} {r['threads']:7d} {r['read_s']:7.1f} {r['rate']:12.1f} {r['train_s']:8.0f} "
              f"{r['top1']:10.4f} {r['best']:7.4f}")
    pairs = [(runs["rgb", s], runs["dct", s]) for (name, s) in sorted(runs) if name == "rgb" and ("dct", s) in runs]
    if not pairs:
        return
    gaps = [100 * (dct["top1"] - rgb["top1"]) for rgb, dct in pairs]
    speed = [dct["rate"] / rgb["rate"] for rgb, dct in pairs]
    spread = ""
    if len(gaps) > 1:  # the standard error of the mean paired gap: how far the mean itself may be off
        sd = statistics.stdev(gaps)
        spread = (f" (sd {sd:.1f}, standard error {sd / len(gaps) ** 0.5:.1f}; DCT ahead on "
                  f"{sum(g > 0 for g in gaps)}, tied on {sum(g == 0 for g in gaps)} of {len(gaps)} seeds)")
    print(f"DCT / RGB over {len(pairs)} paired seed(s): training {statistics.mean(speed):.2f}x images/s "
          f"(range {min(speed):.2f}-{max(speed):.2f}x); top-1 {statistics.mean(gaps):+.1f} points{spread}; "
          f"RGB mean {100 * statistics.mean(r['top1'] for r, _ in pairs):.1f}%, "
          f"DCT mean {100 * statistics.mean(d['top1'] for _, d in pairs):.1f}%")


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
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split + initial weights), e.g. 0,1,2")
    parser.add_argument("--inputs", default="rgb,dct", help="which of rgb,dct to train for each seed")
    parser.add_argument("--no-profile", action="store_true", help="skip the where-the-time-goes timing")
    args = parser.parse_args()
    inputs = [name.strip() for name in args.inputs.split(",")]
    if not set(inputs) <= set(RECIPES):
        parser.error(f"--inputs {args.inputs!r}: choose from rgb,dct")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 0,1,2")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    for seed in seeds:
        for name in inputs:
            train(RECIPES[name], args.data, out / f"{name}-seed{seed}", args.epochs, args.threads, seed)
    print(f"data {args.data}; CPU {cpu_name()}; runs in {out}")
    report(finished_runs(out))
    if args.no_profile:
        return
    print("where the time goes (forward + backward, batch 32, 224 px, fp32, best of 3):")
    for label, seconds in where_time_goes():
        print(f"  {label:38s} {seconds * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
