"""A denoise run against CBM3D (issue 11) on exactly the noisy validation images the run is scored on.

The classical peer: CBM3D (``bm3d.bm3d_rgb``, Dabov et al. 2007, the ``bm3d`` 4.x package, profile
'np', opponent colour space) with the noise's true sigma, given the same noisy images the run sees:
the run's own held-out split (loaded the way ``cnnlab eval`` loads it: the run's split rule, seed and
limit) with each image's fixed validation noise made by the task's own ``eval_batch`` (seeded from the
image's pixels; float, unclipped, as the model gets it). Both outputs are scored the same way, by the
task's ``psnr_8bit``: RGB, 0-255, no shave, after rounding to 8 bits, per image then averaged. The run's
score is also taken through ``cnnlab.app.evaluate.evaluate_run`` (what ``cnnlab eval`` prints), so the
table's model column can be checked against it.

    python benchmarks/denoise_bm3d_bench.py --run /tmp/bench/dn25 --data /work/shared/data/sr_train [--limit N]

``--limit N`` scores only the first N validation images (a quick check; the figure uses all of them).
BM3D runs on one thread (numpy/scipy), ~10-30 s per 481x321 colour image on a Zen 3 core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cnnlab._runtime import tune_openmp_env

tune_openmp_env()  # as the CLI does, before torch loads

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_runs import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a denoise run directory (e.g. from --recipe denoise-s25)")
    parser.add_argument("--data", required=True, help="the data the run was trained on (its 'val' split is used)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N validation images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model (default 1)")
    parser.add_argument("--profile", default="np", help="bm3d profile: 'np' (default) or 'refilter'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from importlib.metadata import version

    import bm3d
    import numpy as np

    from cnnlab.app.evaluate import evaluate_run, load_like_run, same_spec
    from cnnlab.app.inference import load_fast
    from cnnlab.errors import CnnlabError
    from cnnlab.tasks import restore

    run = load_fast(args.run, "cpu", "run")
    if run.task.name != "denoise":
        raise SystemExit(f"{args.run} is a {run.task.name} run, not denoise")
    if not same_spec(args.data, run.config["data"]):
        raise SystemExit(f"--data {args.data} is not the data {args.run} was trained on "
                         f"({run.config['data']['spec']}): its validation split would not be the held-out one")
    if run.task.noise != "gaussian" or run.task.sigma[0] != run.task.sigma[1]:
        raise CnnlabError("CBM3D is given one known sigma: the run must use fixed Gaussian noise")
    sigma = run.task.sigma[0]
    split = load_like_run(run, args.data, run.config["train"].get("limit")).val
    n = len(split) if args.limit is None else min(args.limit, len(split))

    rows = []
    t_model = t_bm3d = 0.0
    with torch.no_grad():
        for i in range(n):
            batch = run.task.eval_batch(split.take(slice(i, i + 1)))  # the task's own fixed validation noise
            clean, noisy = batch["clean"], batch["input"]  # uint8 (1, C, H, W); float 0-255, unclipped
            start = time.perf_counter()
            model_out = run.task.denoise(run, noisy)  # [0, 1], the run's model on the whole image
            t_model += time.perf_counter() - start
            z = (noisy[0].permute(1, 2, 0).numpy() / 255.0).astype(np.float64)
            start = time.perf_counter()
            est = bm3d.bm3d_rgb(z, sigma_psd=sigma / 255.0, profile=args.profile)
            t_bm3d += time.perf_counter() - start
            bm3d_out = torch.from_numpy(np.clip(est, 0, 1)).permute(2, 0, 1)[None].float()
            scores = [float(restore.psnr_8bit(x, clean)[0]) for x in (noisy / 255.0, model_out, bm3d_out)]
            rows.append(scores)
            h, w = clean.shape[-2:]
            print(f"{i:3d}  {w}x{h}  noisy {scores[0]:6.2f}  model {scores[1]:6.2f}  CBM3D {scores[2]:6.2f}  "
                  f"model-CBM3D {scores[1] - scores[2]:+5.2f} dB", flush=True)

    mean = [sum(r[k] for r in rows) / len(rows) for k in range(3)]
    wins = sum(r[1] > r[2] for r in rows)
    print(f"\n{n} validation images of {args.data} (the run's own held-out split), Gaussian sigma {sigma:g}, "
          f"PSNR on RGB, 0-255, no shave, 8-bit rounded, mean over images; CPU {cpu_name()}, {args.threads} "
          "torch thread(s):")
    print("| method | PSNR dB | s/image |")
    print("|---|---|---|")
    print(f"| noisy input | {mean[0]:.2f} | |")
    print(f"| {run.config['model']['name']} ({args.run}) | {mean[1]:.2f} | {t_model / n:.2f} |")
    print(f"| CBM3D (bm3d {version('bm3d')} bm3d_rgb, profile {args.profile}, "
          f"sigma_psd {sigma:g}/255) | {mean[2]:.2f} | {t_bm3d / n:.1f} |")
    print(f"model - CBM3D: {mean[1] - mean[2]:+.2f} dB; model better on {wins} of {n} images")
    if args.limit is None:
        result, _ = evaluate_run(args.run, args.data, split="val")
        print(f"cnnlab eval {args.run} --data {args.data}: psnr {result['psnr']:.4f}, baseline_psnr "
              f"{result['baseline_psnr']:.4f} on {result['examples']} images (check: model column {mean[1]:.4f})")


if __name__ == "__main__":
    main()
