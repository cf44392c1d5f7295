"""Inference against training throughput of one model (issue 15, item 1), side by side in one run.

Trains a short run with recipe ``eval-speed`` (mini_xception, one logit, 128 px cats-vs-dogs photos
from ../shared/data, else 128 px built-in shapes), takes its training images/s from metrics.jsonl,
then times the forward passes of evaluation on the run's validation split two ways, interleaved
round by round on the same decoded images:

  before   fp32, NCHW, batch 256: what ``cnnlab eval`` did until issue 15
  now      what ``cnnlab eval RUN`` does: the run's precision, channels_last, cache-sized batches

and prints images/s of each and the ratios (goal: now / training >= 2.5).

    python benchmarks/eval_bench.py [--data SPEC] [--precision auto] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cnnlab._runtime import tune_openmp_env

tune_openmp_env()  # as the CLI does, before torch loads

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling benchmark
from dense_runs import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "cats_vs_dogs" / "train"


def forward_rate(run, split, precision, batch: int) -> float:
    """Images/s of ``cnnlab.train.loop.evaluate`` over ``split`` (data already decoded)."""
    from cnnlab.train.loop import evaluate

    start = time.perf_counter()
    evaluate(run.model, run.task, split, run.preprocess, precision, batch, run.info)
    return len(split) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(PHOTOS) if PHOTOS.is_dir() else "builtin:shapes?n=600&size=128")
    parser.add_argument("--precision", default="auto", help="the training precision (auto, fp32, bf16)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from cnnlab.app.evaluate import load_like_run
    from cnnlab.app.inference import load_fast
    from cnnlab.rundir import load_run
    from cnnlab.train import TrainConfig, fit
    from cnnlab.train.precision import cpu_has_fast_bf16, inference_batch, make_precision
    from cnnlab.train.recipes import get_recipe

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        fit(TrainConfig(task="classify", data=args.data, out=str(out), recipe="eval-speed", precision=args.precision,
                        threads=args.threads, **get_recipe("eval-speed")), progress=False)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        train_rate = rows[-1]["images_per_s"]
        before_run, now_run = load_run(out, "cpu"), load_fast(out, "cpu", "run")
        split = load_like_run(now_run, args.data, now_run.config["train"]["limit"]).val
        before = make_precision("fp32", "cpu", channels_last=False)
        batch = inference_batch(now_run.input_size)
        rates: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(args.rounds):
            rates["before"].append(forward_rate(before_run, split, before, 256))
            rates["now"].append(forward_rate(now_run, split, now_run.precision, batch))
    best = {k: max(v) for k, v in rates.items()}
    print(f"data {args.data}: {len(split)} validation images; threads {args.threads}; CPU {cpu_name()}; "
          f"bf16 fast: {cpu_has_fast_bf16()}")
    print(f"training ({now_run.config['train']['precision']} -> {now_run.precision.name}): {train_rate:8.1f} img/s")
    print(f"eval before (fp32, NCHW, batch 256):     {best['before']:8.1f} img/s")
    print(f"eval now ({now_run.precision.name}, channels_last, batch {batch}):  {best['now']:8.1f} img/s")
    print(f"now / training {best['now'] / train_rate:.2f}x   now / before {best['now'] / best['before']:.2f}x")


if __name__ == "__main__":
    main()
