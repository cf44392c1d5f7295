"""GPU check for a lent CUDA machine: run cnnlab's CUDA code paths end to end, then take the GPU figures.

Run from the repository root (no install needed):

    PYTHONPATH=src python benchmarks/gpu_check.py --out /tmp/gpu

1. CUDA paths through the CLI: train (auto precision -> bf16 on Ampere+), eval, predict, explain
   (Grad-CAM), and a 1-process torchrun (NCCL) run; each must exit 0.
2. mini_xception 180x180, batch 32, training images/s: cnnlab fp32 and `auto` against Keras 3 on its
   torch backend on the same GPU (Keras is not a cnnlab dependency: it runs only where importable).
3. The `cifar10-fast` recipe's wall time on 45,000 32x32 images. The CIFAR-10 arrays cannot travel to
   the lent machine, so `builtin:shapes` at 32x32 stands in: the same tensor shapes and the same
   work per epoch, so the same time; its accuracy says nothing about CIFAR-10.
Prints one JSON object at the end and writes it to OUT/gpu_check.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def cli(*args: str, timeout: int = 300) -> dict:
    """Run `python -m cnnlab ARGS`; the exit code, wall seconds and the last output lines."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=timeout)
    tail = (p.stdout + p.stderr).strip().splitlines()[-3:]
    print(f"[{p.returncode}] cnnlab {' '.join(args)}\n    " + "\n    ".join(tail), flush=True)
    return {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1), "tail": tail}


def cuda_paths(out: Path) -> dict:
    data = "builtin:shapes?n=2000&size=64"
    run = out / "run"
    res = {"train": cli("train", "classify", "--data", data, "--model", "mini_xception", "--out", str(run),
                        "--epochs", "2", "--device", "cuda", "--quiet")}
    res["eval"] = cli("eval", str(run), "--data", data, "--json")
    imgs = out / "imgs"
    imgs.mkdir(exist_ok=True)
    from PIL import Image

    from cnnlab.data import load_data

    bundle = load_data("builtin:shapes?n=60&size=64", val_split=0.1, seed=1)
    for i in range(4):
        Image.fromarray(bundle.val.x[i].permute(1, 2, 0).numpy()).save(imgs / f"{i}.png")
    res["predict"] = cli("predict", str(run), str(imgs), "--device", "cuda", "--format", "json")
    res["explain"] = cli("explain", str(run), str(imgs), "--method", "gradcam", "--device", "cuda",
                         "--out", str(out / "explain"))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "cnnlab", "train", "classify", "--data", data,
                        "--model", "mini_xception", "--out", str(out / "ddp"), "--epochs", "1", "--device", "cuda",
                        "--quiet"], capture_output=True, text=True, timeout=300)
    res["torchrun_nccl"] = {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1),
                            "tail": (p.stdout + p.stderr).strip().splitlines()[-3:]}
    print(f"[{p.returncode}] torchrun nccl: {res['torchrun_nccl']['tail']}", flush=True)
    return res


def cnnlab_img_s(precision: str, steps: int) -> tuple[str, float]:
    """Training images/s of mini_xception (binary head, RMSprop like the listing) on the GPU."""
    import torch.nn.functional as F

    from cnnlab.models import create_model
    from cnnlab.train.precision import make_precision

    torch.manual_seed(0)
    prec = make_precision(precision, "cuda")
    model = prec.prepare(create_model("mini_xception", num_classes=1))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    x, y = torch.rand(32, 3, 180, 180), torch.randint(0, 2, (32,)).float().cuda()

    def step() -> None:
        with prec.autocast():
            logits = model(prec.batch(x))
        loss = F.binary_cross_entropy_with_logits(logits.float().view(-1), y)
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)

    return prec.name, _img_s(step, steps)


def xception_throughput(steps: int) -> dict:
    rows = {}
    for precision in ("fp32", "auto"):
        name, img_s = cnnlab_img_s(precision, steps)
        rows[f"cnnlab {precision} ({name})"] = img_s
    if importlib.util.find_spec("keras") is not None:
        os.environ["KERAS_BACKEND"] = "torch"
        spec = importlib.util.spec_from_file_location("keras_xception", HERE / "keras_xception.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        times = mod.keras_worker(3, steps)
        rows["Keras 3 (torch backend)"] = round(32 / sorted(times)[len(times) // 2], 1)
    return rows


def _img_s(step, steps: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return round(32 / sorted(times)[len(times) // 2], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip", nargs="*", default=[], choices=["paths", "xception", "cifar"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "date": time.strftime("%Y-%m-%d")}
    if "paths" not in args.skip:
        result["cuda_paths"] = cuda_paths(args.out)
    if "xception" not in args.skip:
        result["mini_xception_180_b32_img_s"] = xception_throughput(args.steps)
        print(result["mini_xception_180_b32_img_s"], flush=True)
    if "cifar" not in args.skip:
        result["cifar10_fast_recipe_45k"] = cli(
            "train", "classify", "--data", "builtin:shapes?n=50000&size=32", "--val-split", "0.1",
            "--recipe", "cifar10-fast", "--out", str(args.out / "cifar"), "--device", "cuda", "--quiet",
            timeout=400)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
