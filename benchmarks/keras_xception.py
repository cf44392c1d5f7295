"""Peer throughput: the lecture's small Xception, one training step, cnnlab vs Keras 3 (torch and TF backends).

Every framework trains the same network (DLwP 2nd ed. ch. 9 listing: 5x5 stem, five residual stages
of two separable convs, binary head) on the same random 180x180 batch of 32 with RMSprop, in its own
subprocess, for `--warmup` untimed then `--steps` timed steps; the table shows images/s (best of
`--rounds` interleaved rounds, so a burst of load from other processes hurts every framework alike)
and the ratio to Keras on TensorFlow.

Keras and TensorFlow are NOT cnnlab dependencies: install them in a separate environment, e.g.

    python -m venv --system-site-packages /tmp/kerasenv && /tmp/kerasenv/bin/pip install tensorflow-cpu keras
    python benchmarks/keras_xception.py --keras-python /tmp/kerasenv/bin/python

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

SIZE, BATCH = 180, 32


def cnnlab_worker(mode: str, warmup: int, steps: int) -> list[float]:
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
    x = torch.rand(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, 2, (BATCH,)).float()

    def step() -> None:
        xb = prec.batch(x)
        with prec.autocast():
            logits = model(xb)
        loss = F.binary_cross_entropy_with_logits(logits.float().view(-1), y)
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)

    return _time(step, warmup, steps)


def keras_worker(warmup: int, steps: int) -> list[float]:
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
    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 5, use_bias=False)(x)
    for size in (32, 64, 128, 256, 512):
        residual = x
        for _ in range(2):
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
            x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="binary_crossentropy", optimizer="rmsprop")
    rng = np.random.default_rng(0)
    xb = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
    yb = rng.integers(0, 2, (BATCH, 1)).astype("float32")
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


def run_row(python: str, arg: str, env_extra: dict, warmup: int, steps: int) -> dict:
    env = {**os.environ, **env_extra}
    cmd = [python, os.path.abspath(__file__), "--worker", arg, "--warmup", str(warmup), "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
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
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside a subprocess: time one framework, print one JSON line
        times = (keras_worker if args.worker == "keras" else
                 lambda w, s: cnnlab_worker(args.worker, w, s))(args.warmup, args.steps)
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
            res = run_row(python, arg, env, args.warmup, args.steps)
            if "error" in res:
                best.setdefault(label, res)
                continue
            res["img_s"] = BATCH / res["median_s"]
            if "img_s" not in best.get(label, {}) or res["img_s"] > best[label]["img_s"]:
                best[label] = res
    _print_table(best, "CPU seconds" if args.cpu_time else "wall seconds", args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": BATCH, "size": SIZE, "loadavg": os.getloadavg(), "rows": best}, f, indent=1)


def _print_table(best: dict[str, dict], clock: str, threads: int) -> None:
    ref = best.get("Keras 3 (TensorFlow backend)", {}).get("img_s")
    print(f"mini_xception {SIZE}x{SIZE}, batch {BATCH}, training step, images/s (median step in {clock}, "
          f"best round, threads: {threads or 'default'})")
    print(f"{'framework':32s} {'img/s':>8s} {'vs Keras-TF':>12s}")
    for label, res in best.items():
        if "error" in res:
            print(f"{label:32s} failed: {res['error']}")
            continue
        ratio = f"{res['img_s'] / ref:.2f}x" if ref else "-"
        print(f"{label:32s} {res['img_s']:8.1f} {ratio:>12s}")
    print(f"load average: {os.getloadavg()[0]:.1f} (other processes on the same cores lower every row)")


if __name__ == "__main__":
    main()
