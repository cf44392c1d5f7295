"""Peer throughput: the lecture's small Xception, one training step, cnnlab vs Keras 3 (torch and TF backends).

Every framework trains the same network (DLwP 2nd ed. ch. 9 listing: 5x5 stem, five residual stages
of two separable convs, binary head) on the same random 180x180 batch of 32 with RMSprop, in its own
subprocess, for `--warmup` untimed then `--steps` timed steps; the table shows images/s (best of
`--rounds` interleaved rounds, so a burst of load from other processes hurts every framework alike)
and the ratio to Keras on TensorFlow.

Keras and TensorFlow are NOT cnnlab dependencies: install them in a separate environment. Keras'
torch backend must train on the very torch cnnlab is measured with (torch==2.13.0, already on this
disk), so let the script make that environment: a venv with its own keras and tensorflow-cpu that
takes torch from this one (no torch is downloaded; a pip constraint pins it to this version):

    python benchmarks/keras_xception.py --make-keras-venv /tmp/kerasenv
    python benchmarks/keras_xception.py --keras-python /tmp/kerasenv/bin/python

(`python -m venv --system-site-packages` is not enough: from a venv it sees the base interpreter's
packages, which need not include torch, and the Keras-on-torch row then fails.)
`--size 32 --batch 2 --warmup 0 --steps 1 --rounds 1` is a quick check that every row runs.

On a busy machine, `--threads 1 --cpu-time` compares the work per image instead (CPU seconds per
step; on idle cores the wall-clock rate is up to cores x that figure for every framework).

Rows: cnnlab fp32 NCHW, fp32 channels_last, `auto` (cnnlab's Precision object and CPU kernels, what
`cnnlab train` uses), `auto` without cnnlab's allocator setting (CNNLAB_TUNE_MALLOC=0), `auto` without
its hand-written CPU kernels (CNNLAB_KERNELS=0), then Keras 3 with KERAS_BACKEND=torch and =tensorflow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SIZE, BATCH = 180, 32  # the listing's input size and batch (--size, --batch change them for a quick check)
KERAS_PACKAGES = ("tensorflow-cpu", "keras")


def cnnlab_worker(mode: str, warmup: int, steps: int, size: int = SIZE, batch: int = BATCH) -> list[float]:
    """Seconds per training step for cnnlab's mini_xception in `mode` (fp32-nchw, fp32-cl or a precision)."""
    from cnnlab._runtime import tune_openmp_env

    tune_openmp_env()  # what the cnnlab CLI does before torch is imported
    import torch
    import torch.nn.functional as F

    from cnnlab.models import create_model
    from cnnlab.train.precision import make_precision

    torch.manual_seed(0)
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    precision = "fp32" if mode.startswith("fp32") else mode
    prec = make_precision(precision, "cpu", channels_last=mode != "fp32-nchw")
    model = prec.prepare(create_model("mini_xception", num_classes=1))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 2, (batch,)).float()

    def step() -> None:
        xb = prec.batch(x)
        with prec.autocast():
            logits = model(xb)
        loss = F.binary_cross_entropy_with_logits(logits.float().view(-1), y)
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)

    return _time(step, warmup, steps)


def keras_worker(warmup: int, steps: int, size: int = SIZE, batch: int = BATCH) -> list[float]:
    """Seconds per `train_on_batch` for the Keras listing (backend from KERAS_BACKEND)."""
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads and os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif threads:
        import torch

        torch.set_num_threads(threads)
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(size, size, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 5, use_bias=False)(x)
    for filters in (32, 64, 128, 256, 512):
        residual = x
        for _ in range(2):
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
            x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="binary_crossentropy", optimizer="rmsprop")
    rng = np.random.default_rng(0)
    xb = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    yb = rng.integers(0, 2, (batch, 1)).astype("float32")
    return _time(lambda: model.train_on_batch(xb, yb), warmup, steps)


def _clock() -> float:
    """Wall seconds, or with BENCH_CPU_TIME=1 this process's CPU seconds (user + system, all threads)."""
    if os.environ.get("BENCH_CPU_TIME") == "1":
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    return time.perf_counter()


def _time(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = _clock()
        step()
        times.append(_clock() - t)
    return times


ROWS = [  # (label, python: 'self' or 'keras', worker argument, extra environment)
    ("cnnlab fp32 NCHW", "self", "fp32-nchw", {}),
    ("cnnlab fp32 channels_last", "self", "fp32-cl", {}),
    ("cnnlab --precision auto", "self", "auto", {}),
    ("cnnlab auto, glibc malloc defaults", "self", "auto", {"CNNLAB_TUNE_MALLOC": "0"}),
    ("cnnlab auto, CPU kernels off", "self", "auto", {"CNNLAB_KERNELS": "0"}),
    ("Keras 3 (torch backend)", "keras", "keras", {"KERAS_BACKEND": "torch"}),
    ("Keras 3 (TensorFlow backend)", "keras", "keras", {"KERAS_BACKEND": "tensorflow",
                                                       "TF_CPP_MIN_LOG_LEVEL": "2"}),
]


def make_keras_venv(target: str | os.PathLike, packages: Sequence[str] = KERAS_PACKAGES) -> Path:
    """Create the venv for the Keras rows at ``target`` and return its python.

    The venv installs ``packages`` itself but takes torch from THIS environment: a ``.pth`` file puts
    the folder holding this torch after the venv's own site-packages, so Keras' torch backend runs the
    same torch build as the cnnlab rows, from local disk. pip gets a constraint that pins torch to
    this version, so no requirement can make it download another one.
    """
    import sysconfig
    import venv

    import torch

    from cnnlab.files import write_text

    root = Path(target)
    venv.EnvBuilder(with_pip=bool(packages)).create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    torch_home = Path(torch.__file__).resolve().parents[1]  # the site-packages folder that holds torch
    ours = {torch_home, *(Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib"))}
    write_text(site / "cnnlab-torch.pth", "".join(f"{d}\n" for d in sorted(ours)))
    if packages:
        pin = root / "cnnlab-constraints.txt"
        write_text(pin, f"torch=={torch.__version__.split('+')[0]}\n")
        subprocess.run([python, "-m", "pip", "install", "--constraint", pin, *packages], check=True)
    problem = torch_problem(str(python))
    if problem:
        raise SystemExit(f"error: {problem}")
    return python


def torch_problem(python: str) -> str | None:
    """Why ``python`` cannot run the Keras-on-torch row (no torch, or another torch than this one), or None."""
    import torch

    code = "import torch; print(torch.__version__)"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    except OSError as exc:
        return f"{python}: {exc.strerror}; make the Keras venv with --make-keras-venv DIR"
    theirs = out.stdout.strip() if out.returncode == 0 else None
    if theirs == torch.__version__:
        return None
    found = f"torch {theirs}" if theirs else "no torch"
    return (f"{python} has {found}, the cnnlab rows run torch {torch.__version__}; make the Keras venv with "
            "--make-keras-venv DIR (it takes this torch, no download)")


def run_row(python: str, arg: str, env_extra: dict, warmup: int, steps: int, size: int = SIZE,
            batch: int = BATCH) -> dict:
    env = {**os.environ, **env_extra}
    if env_extra.get("KERAS_BACKEND") == "torch":
        problem = torch_problem(python)
        if problem:
            return {"error": problem}
    cmd = [python, os.path.abspath(__file__), "--worker", arg, "--warmup", str(warmup), "--steps", str(steps),
           "--size", str(size), "--batch", str(batch)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:  # no such python (the Keras venv was never made)
        return {"error": f"{python}: {exc.strerror}; make the Keras venv with --make-keras-venv DIR"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keras-python", default="/tmp/kerasenv/bin/python",
                    help="a Python with keras and tensorflow-cpu installed (not a cnnlab dependency)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for every framework (0: its default)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time steps in CPU seconds of the process instead of wall seconds (robust to other "
                         "load on the machine; with --threads 1 it compares the work per image)")
    ap.add_argument("--size", type=int, default=SIZE, help="input height and width (the listing's: 180)")
    ap.add_argument("--batch", type=int, default=BATCH, help="images per step (the listing's: 32)")
    ap.add_argument("--make-keras-venv", metavar="DIR", default=None,
                    help="create the Keras venv at DIR (keras + tensorflow-cpu, torch from this environment), then stop")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.make_keras_venv:
        print(f"Keras venv ready: {make_keras_venv(args.make_keras_venv)}")
        return
    if args.worker:  # inside a subprocess: time one framework, print one JSON line
        times = (keras_worker if args.worker == "keras" else
                 lambda w, s, size, batch: cnnlab_worker(args.worker, w, s, size, batch)
                 )(args.warmup, args.steps, args.size, args.batch)
        print(json.dumps({"median_s": statistics.median(times), "min_s": min(times)}))
        return

    if args.threads:
        os.environ["BENCH_THREADS"] = str(args.threads)
    if args.cpu_time:
        os.environ["BENCH_CPU_TIME"] = "1"
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, which, arg, env in ROWS:
            python = sys.executable if which == "self" else args.keras_python
            res = run_row(python, arg, env, args.warmup, args.steps, args.size, args.batch)
            if "error" in res:
                best.setdefault(label, res)
                continue
            res["img_s"] = args.batch / res["median_s"]
            if "img_s" not in best.get(label, {}) or res["img_s"] > best[label]["img_s"]:
                best[label] = res
    _print_table(best, "CPU seconds" if args.cpu_time else "wall seconds", args.threads, args.size, args.batch)
    if args.json:
        from cnnlab.files import write_json

        write_json(args.json, {"batch": args.batch, "size": args.size, "loadavg": os.getloadavg(), "rows": best})


def _print_table(best: dict[str, dict], clock: str, threads: int, size: int = SIZE, batch: int = BATCH) -> None:
    """One row per framework under aligned columns; a failed row says why after the columns."""
    ref = best.get("Keras 3 (TensorFlow backend)", {}).get("img_s")
    width = max(len("framework"), *map(len, best))  # the longest label sets the first column
    print(f"mini_xception {size}x{size}, batch {batch}, training step, images/s (median step in {clock}, "
          f"best round, threads: {threads or 'default'})")
    print(f"{'framework':{width}s} {'img/s':>8s} {'vs Keras-TF':>12s}")
    for label, res in best.items():
        if "error" in res:
            print(f"{label:{width}s} {'failed':>8s} {'-':>12s}  {res['error']}")
            continue
        ratio = f"{res['img_s'] / ref:.2f}x" if ref else "-"
        print(f"{label:{width}s} {res['img_s']:8.1f} {ratio:>12s}")
    print(f"load average: {os.getloadavg()[0]:.1f} (other processes on the same cores lower every row)")


if __name__ == "__main__":
    main()
