"""Inception vs Xception: the comparison of Chollet (CVPR 2017), re-run small.

``inception_small`` (Inception-v3 module A towers with 1x1 reductions, v3 grid reductions, no
residuals) and ``xception_small`` (Xception's separable-conv modules with residuals) share one
skeleton and have the same parameter count within 2% (``cnnlab.models.inception``). Both are trained
with one recipe, ``inception-vs-xception``, on one classification spec (CIFAR-10 by default in the
README; the cats-vs-dogs photos at 96-128 px with ``--image-size 128 --stem-stride 2``), each into
its own run directory ``OUT/<model>``. The record puts accuracy, training images/s and mult-adds side
by side. The paper's claim is that Xception uses its parameters more efficiently: 0.790 vs 0.782
ImageNet top-1, and a larger gain on JFT (350M images); a short run on small images says little about
either, and the findings say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from cnnlab.experiments.record import write_record
from cnnlab.experiments.training import TrainedRun, compared_runs, noise_band, percent, plural

MODELS = ("inception_small", "xception_small")
RECIPE = "inception-vs-xception"
PLOT = "inception_vs_xception.png"
PARITY = 0.02  # the two parameter counts may differ by at most this fraction
SPEED_TIE = 1.10  # images/s within this factor of each other: too close to call on a shared machine


def parity(runs: dict[str, TrainedRun]) -> float:
    """|params_xception / params_inception - 1|."""
    return abs(runs["xception_small"].params / runs["inception_small"].params - 1)


def _accuracy(inc: TrainedRun, xcp: TrainedRun) -> str:
    """Which net is more accurate, only where the gap is larger than the validation set's noise."""
    top_inc, top_xcp = inc.last("val_top1"), xcp.last("val_top1")
    gap, band = top_xcp - top_inc, noise_band(top_xcp, top_inc, xcp.val_size)
    head = (f"Validation top-1 after {plural(len(inc.history), 'epoch')}: xception_small {percent(top_xcp)}, "
            f"inception_small {percent(top_inc)} ({100 * gap:+.2f} points for Xception): ")
    if abs(gap) <= band or gap == 0:
        return head + (f"level within noise (+-{100 * band:.2f} points on {xcp.val_size:,} validation images): this "
                       "run cannot tell them apart, so it does NOT show the paper's claim.")
    if gap > 0:
        return head + "xception_small is more accurate in this run, as in the paper."
    return head + ("inception_small is more accurate in this run; in the paper Xception was, so this run does NOT "
                   "reproduce its claim.")


def _speed(inc: TrainedRun, xcp: TrainedRun) -> str:
    """Which net trains faster, by how much, and whether its mult-adds predicted it.

    Images/s of two runs on a shared machine move with its load, so a gap under SPEED_TIE names no
    winner. The thread count is part of the finding: depthwise and grouped convolutions and tower
    concatenations do not gain from threads as dense convolutions do, so the order can change with it.
    """
    size = "x".join(map(str, inc.config["preprocess"]["input_size"]))
    threads = {run.threads for run in (inc, xcp)}
    where = ("this machine" if None in threads or len(threads) > 1 else
             f"this machine, {plural(next(iter(threads)), 'thread')}")
    head = (f"Training speed on {where}: xception_small {xcp.images_per_s:,.0f} img/s, inception_small "
            f"{inc.images_per_s:,.0f} img/s, for {xcp.macs / 1e6:.1f} M vs {inc.macs / 1e6:.1f} M mult-adds per "
            f"{size} image: ")
    if len(threads) > 1:  # e.g. a run resumed with other --threads
        return head + "not compared (the two runs used different thread counts)."
    if not (xcp.images_per_s > 0 and inc.images_per_s > 0):  # NaN: a run without a timed epoch
        return head + "not compared (a run recorded no speed)."
    ratio = xcp.images_per_s / inc.images_per_s
    if 1 / SPEED_TIE <= ratio <= SPEED_TIE:
        return head + f"level (within {100 * (SPEED_TIE - 1):.0f}%, too close to call on a shared machine)."
    faster, slower = (xcp, inc) if ratio > 1 else (inc, xcp)
    head += f"{faster.model} is {max(ratio, 1 / ratio):.2f}x faster"
    if faster.macs == slower.macs:
        return head + "."
    if faster.macs < slower.macs:
        return head + ", and it is the net with fewer mult-adds: here they predict the speed."
    return head + (" despite more mult-adds: mult-adds do not predict the speed here (on a CPU, memory traffic "
                   "costs as much as arithmetic: depthwise convolutions, tower concatenations and BatchNorm passes "
                   "move much data per multiply-add).")


def findings(runs: dict[str, TrainedRun]) -> list[str]:
    inc, xcp = runs["inception_small"], runs["xception_small"]
    gap = parity(runs)
    size = "x".join(map(str, inc.config["preprocess"]["input_size"]))
    images = inc.train_size * len(inc.history)
    return [
        f"Parameters: inception_small {inc.params:,}, xception_small {xcp.params:,} ({100 * gap:.1f}% apart"
        + (")" if gap <= PARITY else f", MORE than the {100 * PARITY:.0f}% the comparison needs)"),
        _accuracy(inc, xcp),
        _speed(inc, xcp),
        f"Caveat: {images:,} training images seen at {size} px say little about ImageNet (the paper: 0.790 vs "
        "0.782 top-1 for Xception vs Inception V3) or JFT (350M images, where its gain was larger); small "
        "data favours whichever net regularises better, not the one that uses its parameters better at scale.",
    ]


def plot(runs: dict[str, TrainedRun], path: Path) -> Path:
    """Validation top-1 per epoch, and against training time (the nets run at different speeds)."""
    from cnnlab.render.lines import Line, Panel, plot_panels

    by_epoch, by_time = [], []
    for model, color in zip(MODELS, ("tab:blue", "tab:green"), strict=True):
        run = runs[model]
        top1 = [100 * v for v in run.curve("val_top1")]
        minutes = [sum(run.curve("seconds")[: i + 1]) / 60 for i in range(len(run.history))]
        label = f"{model} ({run.params / 1e6:.2f}M params)"
        by_epoch.append(Line(label, run.curve("epoch"), top1, "-", color, 2, "o"))
        by_time.append(Line(label, minutes, top1, "-", color, 2, "o"))
    return plot_panels([Panel("by epoch", by_epoch, "epoch", "validation top-1 (%)", integer_x=True),
                        Panel("by training time", by_time, "minutes (training + evaluation)",
                              "validation top-1 (%)")],
                       path, "Inception vs Xception at equal parameter counts", share_y=True)


def table(runs: dict[str, TrainedRun]) -> dict[str, Any]:
    rows = []
    for model in MODELS:
        run = runs[model]
        rows.append([model, f"{run.params:,}", f"{run.macs / 1e6:.1f}", percent(run.last("val_top1")),
                     percent(max(run.curve("val_top1"), default=float("nan"))), f"{run.last('train_loss'):.3f}",
                     f"{run.images_per_s:,.0f}", f"{run.minutes:.1f}"])
    return {"columns": ["model", "parameters", "mult-adds (M)", "final val top-1", "best val top-1",
                        "final train loss", "train img/s", "minutes"], "rows": rows}


def run(data: str, out: str | Path, overrides: dict[str, Any] | None = None, *,
        console: Console | None = None, progress: bool = True) -> dict[str, Any]:
    """Train both networks into ``OUT/<model>``, then write ``OUT/inception_vs_xception.png`` and
    ``.json``; returns the record."""
    runs, settings = compared_runs(MODELS, data, out, RECIPE, overrides, console, progress)
    trained = list(runs.values())
    plot(runs, Path(out) / PLOT)
    record = {
        "experiment": "inception-vs-xception",
        "title": "Inception vs Xception at equal parameter counts",
        "shows": ("Chollet (2017) re-run small: an Inception-v3-style net and an Xception-style net with the "
                  "same skeleton and parameter count, trained with one recipe; accuracy, training speed and "
                  "mult-adds side by side."),
        "settings": settings,
        "table": table(runs),
        "findings": findings(runs),
        "plots": [PLOT],
        "runs": {r.model: r.model for r in trained},
        "parameter_gap": parity(runs),
        "results": {r.model: {"params": r.params, "mult_adds": r.macs, "val_top1": r.curve("val_top1"),
                              "train_loss": r.curve("train_loss"), "images_per_s": r.images_per_s,
                              "minutes": r.minutes} for r in trained},
    }
    write_record(out, record)
    return record
