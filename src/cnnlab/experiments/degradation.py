"""Degradation: He et al.'s (CVPR 2016) figure 1 at small scale, plain vs residual at depths 20 and 56.

plain20, plain56, resnet20 and resnet56 (the CIFAR ResNets of section 4.2 and the same layers with the
shortcuts removed; each pair has the same parameters) are trained with one recipe, ``degradation``,
on one classification spec, each into its own run directory ``OUT/<model>``. The paper's finding:
the 56-layer *plain* net has a higher **training** error than the 20-layer one (an optimisation
difficulty, not overfitting), while ResNet-56 beats ResNet-20. The experiment says whether its run
reproduces each half, with the numbers.

Training error here is the running error over each epoch's augmented batches, as the paper plots
it; validation error is measured on the held-out split after every epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from cnnlab.experiments.record import write_record
from cnnlab.experiments.training import TrainedRun, compared_runs, noise_band, percent, plural

MODELS = ("plain20", "plain56", "resnet20", "resnet56")
RECIPE = "degradation"
PLOT = "degradation.png"


def depth(name: str) -> int:
    """Weighted layers (convolutions + the linear head) of a registered model: the depth in its name."""
    import torch
    from torch import nn

    from cnnlab.models import create_model

    with torch.device("meta"):
        model = create_model(name)
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def chance_error(run: TrainedRun) -> float:
    """1 - 1/classes: the error of a network that has learnt nothing (NaN when the run names no classes)."""
    classes = run.config.get("data", {}).get("info", {}).get("class_names") or []
    return 1 - 1 / len(classes) if classes else float("nan")


#: within this many points of chance error a net "has hardly begun to learn"
AT_CHANCE = 0.02


def _gap(deep: str, shallow: str, err: dict[str, float], runs: dict[str, TrainedRun]) -> tuple[float, float]:
    """(deep minus shallow final training error, the noise band of that gap)."""
    gap = err[deep] - err[shallow]
    return gap, noise_band(err[deep], err[shallow], runs[deep].train_size)


def _level(gap: float, band: float, n: int) -> str:
    return (f"level within noise (the {100 * abs(gap):.2f}-point gap is inside the +-{100 * band:.2f} points that "
            f"another draw of {n:,} training images could give)")


def findings(runs: dict[str, TrainedRun]) -> list[str]:
    """Whether each half of the paper's finding is reproduced, with the final errors.

    A half counts as reproduced, or as contradicted, only when its gap is larger than the noise band of
    the training error (``noise_band`` on one epoch's training images); inside it, the run says neither.
    """
    err = {name: 1 - run.last("train_top1") for name, run in runs.items()}
    val = {name: 1 - run.last("val_top1") for name, run in runs.items()}
    epochs = plural(len(runs["plain56"].history), "epoch")
    n = runs["plain56"].train_size
    chance = chance_error(runs["plain56"])
    at_chance = {name: chance == chance and e > chance - AT_CHANCE for name, e in err.items()}

    gap, band = _gap("plain56", "plain20", err, runs)
    head = (f"plain-56 ends with a training error of {percent(err['plain56'])} against plain-20's "
            f"{percent(err['plain20'])}: ")
    if at_chance["plain56"] and at_chance["plain20"]:
        plain = head + (f"both are still at chance ({percent(chance)} error): neither plain net has begun to learn, "
                        f"so after {epochs} this run says nothing about degradation (train longer: --epochs, --limit)")
    elif abs(gap) <= band:
        plain = head + _level(gap, band, n) + ": this run neither reproduces nor contradicts the degradation problem"
    elif gap > 0:
        plain = head + "higher, so the deeper plain network trains worse: the degradation problem is reproduced"
        # A short run can "reproduce" it for a weaker reason than the paper's: plain-56 has not started
        # to learn at all, where the paper's plain-56 trains, only to a higher error.
        if at_chance["plain56"]:
            plain += (f" (but plain-56 is still at chance, {percent(chance)} error: it has hardly begun to learn, "
                      "while the paper's plain-56 trains, to a higher error than plain-20)")
    else:
        plain = head + "lower: this run does NOT reproduce the degradation problem"

    gap, band = _gap("resnet56", "resnet20", err, runs)
    head = (f"ResNet-56 ends with a training error of {percent(err['resnet56'])} against ResNet-20's "
            f"{percent(err['resnet20'])}: ")
    paper = "(the paper trains 64k iterations of 128, ~180 epochs of 45k images)"
    if abs(gap) <= band:
        residual = head + _level(gap, band, n) + f": after {epochs} the gain from depth is NOT shown {paper}"
    elif gap < 0:
        residual = head + "lower, so the residual network gains from depth, as in the paper"
    else:
        residual = head + f"higher: after {epochs} the deeper ResNet has NOT overtaken the shallower one {paper}"
    return [
        plain,
        residual,
        f"With the same {runs['plain56'].params:,} parameters, ResNet-56 ends at {percent(err['resnet56'])} training "
        f"error and plain-56 at {percent(err['plain56'])}: the shortcuts are the only difference.",
        "Validation error: " + ", ".join(f"{name} {percent(val[name])}" for name in MODELS) + ".",
    ]


def plot(runs: dict[str, TrainedRun], path: Path) -> Path:
    """Training (dashed) and validation (bold) error per epoch: plain nets left, ResNets right."""
    from cnnlab.render.lines import Line, Panel, plot_panels

    panels = []
    for kind, title in (("plain", "plain networks"), ("resnet", "residual networks")):
        lines = []
        for color, d in (("tab:orange", 20), ("tab:red", 56)):
            run = runs[f"{kind}{d}"]
            epochs = run.curve("epoch")
            name = f"{'plain' if kind == 'plain' else 'ResNet'}-{d}"
            lines.append(Line(f"{name} train", epochs, [100 * (1 - v) for v in run.curve("train_top1")], "--",
                              color, 1.2, "."))
            lines.append(Line(f"{name} val", epochs, [100 * (1 - v) for v in run.curve("val_top1")], "-",
                              color, 2.5, "o"))
        panels.append(Panel(title, lines, "epoch", "error (%)", integer_x=True))
    return plot_panels(panels, path, "Degradation (He et al. 2016, fig. 1): dashed = training, bold = validation",
                       share_y=True)


def table(runs: dict[str, TrainedRun]) -> dict[str, Any]:
    rows = []
    for name in MODELS:
        run = runs[name]
        best_val = 1 - max(run.curve("val_top1"), default=float("nan"))
        rows.append([name, str(depth(name)), f"{run.params:,}", percent(1 - run.last("train_top1")),
                     percent(1 - run.last("val_top1")), percent(best_val), f"{run.images_per_s:,.0f}",
                     f"{run.minutes:.1f}"])
    return {"columns": ["model", "layers", "parameters", "final train error", "final val error",
                        "best val error", "train img/s", "minutes"], "rows": rows}


def run(data: str, out: str | Path, overrides: dict[str, Any] | None = None, *,
        console: Console | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the four networks into ``OUT/<model>``, then write ``OUT/degradation.png`` and
    ``OUT/degradation.json``; returns the record (its ``table`` and ``findings`` are what to print)."""
    runs, settings = compared_runs(MODELS, data, out, RECIPE, overrides, console, progress)
    trained = list(runs.values())
    plot(runs, Path(out) / PLOT)
    record = {
        "experiment": "degradation",
        "title": "Degradation: plain vs residual networks at 20 and 56 layers",
        "shows": ("He et al. (2016), figure 1 at small scale: a deeper plain network has a higher training "
                  "error than a shallower one, while the same depth with residual shortcuts trains better."),
        "settings": settings,
        "table": table(runs),
        "findings": findings(runs),
        "plots": [PLOT],
        "runs": {r.model: r.model for r in trained},
        "results": {r.model: {"layers": depth(r.model), "params": r.params, "mult_adds": r.macs,
                              "train_error": [1 - v for v in r.curve("train_top1")],
                              "val_error": [1 - v for v in r.curve("val_top1")],
                              "images_per_s": r.images_per_s, "minutes": r.minutes} for r in trained},
    }
    write_record(out, record)
    return record
