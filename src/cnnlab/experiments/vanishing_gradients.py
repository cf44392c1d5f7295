"""Vanishing and exploding gradients, made visible: deep plain stacks, residual stacks, and the fixes.

Seven variants of one ``depth``-layer stack of 3x3 convs (``width`` channels): plain or residual
(``x + branch(x)``), sigmoid or ReLU, and three modern fixes of the residual ReLU stack: BatchNorm
inside the branch (``x + relu(bn(conv(x)))``, as ResNets do), a branch scaled by 1/sqrt(depth), and a
zero-initialised branch (``x + a * relu(conv(x))`` with a learnable scalar ``a = 0`` at the start:
SkipInit, De & Smith 2020; Goyal et al.'s zero-gamma BN does the same). Every variant starts from the
SAME conv weights (one seed), sees the same batch and labels, and does one backward pass of a
cross-entropy loss; we record the gradient norm and the weight norm of every conv. With ``steps``
the variants then train that many SGD steps on fresh random batches (the same for every variant)
and are measured again.

What it shows (depth 30, seed 0, the README has the numbers): through a plain sigmoid stack the
gradient shrinks by roughly the same factor per layer (sigmoid' <= 1/4), so the first layer gets
~1e-16 of the last layer's: it *vanishes*. Under He initialisation a plain ReLU stack stays level.
A residual ReLU stack without normalisation *explodes*: each block adds a branch as large as its
input, the activations' variance roughly doubles per block, and so do the gradients (~1e6 at the
last layer, 1e5 times the weights' own norm, so any SGD step destroys the weights). The shortcut
alone is no cure; BN in the branch, the 1/sqrt(depth) scale and the zero-initialised branch keep
the gradients level *and* at a usable scale.

The verdict of a measurement: ``vanishes`` when the first layer's gradient is below 1e-3 of the
last layer's; ``explodes`` when some layer's gradient norm exceeds 10x its weight norm (an SGD step
at lr 0.1 would then be larger than the weights themselves) or grows 1e3x towards the input;
``zero`` when every conv gradient is exactly 0 (the zero-initialised branch at the start: only the
scalars ``a`` learn in the first step); ``diverged`` when training made the loss non-finite; else
``healthy``. The computation runs in float64 so that tiny norms are reported rather than
underflowing to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError

#: the deepest stack measured: ~0.5 GB of float64 activations at the default width and size
MAX_DEPTH = 1000


@dataclass(frozen=True)
class Variant:
    """One stack design: plain or residual, its activation, and what the residual branch does."""

    name: str
    residual: bool
    act: str  # "sigmoid" | "relu"
    branch: str = "bare"  # "bare" | "bn" (BN before the activation) | "scaled" (x 1/sqrt(depth)) | "zero-init"


VARIANTS = (
    Variant("plain sigmoid", False, "sigmoid"),
    Variant("plain relu", False, "relu"),
    Variant("residual sigmoid", True, "sigmoid"),
    Variant("residual relu", True, "relu"),
    Variant("residual relu + bn", True, "relu", "bn"),
    Variant("residual relu, 1/sqrt(depth)", True, "relu", "scaled"),
    Variant("residual relu, zero-init", True, "relu", "zero-init"),
)

VANISH_RATIO = 1e-3  # first / last below this: the first layer learns 1000x slower than the last
EXPLODE_RELATIVE = 10.0  # ||grad|| / ||weight|| above this: one step at lr 0.1 outgrows the weights


@dataclass(frozen=True)
class Measurement:
    """One variant's per-layer norms at one moment, first layer (input side) to last."""

    variant: Variant
    grad_norms: tuple[float, ...]
    weight_norms: tuple[float, ...]
    loss: float
    step: int = 0  # SGD steps taken before measuring
    diverged_at: int | None = None  # the step whose loss was non-finite (then the norms are NaN)

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def ratio(self) -> float:
        """First-layer over last-layer gradient norm (NaN when undefined)."""
        first, last = self.grad_norms[0], self.grad_norms[-1]
        return first / last if last > 0 else math.nan

    @property
    def relative(self) -> float:
        """The largest ||grad|| / ||weight|| over the layers: how far one SGD step at lr 1 would go."""
        return max((g / w for g, w in zip(self.grad_norms, self.weight_norms, strict=True) if w > 0),
                   default=math.nan)

    @property
    def verdict(self) -> str:
        if self.diverged_at is not None or not all(math.isfinite(g) for g in self.grad_norms):
            return "diverged"
        if not any(self.grad_norms):
            return "zero"
        ratio = self.ratio
        if self.relative > EXPLODE_RELATIVE or ratio > 1 / VANISH_RATIO:
            return "explodes"
        if ratio < VANISH_RATIO or self.grad_norms[-1] == 0:
            return "vanishes"
        return "healthy"


class Stack(nn.Module):
    """``depth`` x [3x3 conv -> (BN) -> act], plain (``x = branch(x)``) or residual (``x = x + s * branch(x)``).

    ``s`` is 1, 1/sqrt(depth) (``branch="scaled"``) or a learnable scalar starting at 0
    (``branch="zero-init"``); GAP + linear head.
    """

    def __init__(self, depth: int, width: int, variant: Variant, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) if variant.branch == "bn" else nn.Identity()
                                   for _ in range(depth))
        self.act = nn.Sigmoid() if variant.act == "sigmoid" else nn.ReLU()
        self.residual = variant.residual
        self.scale = 1 / math.sqrt(depth) if variant.branch == "scaled" else 1.0
        # SkipInit: one scalar per block, zero at the start, so every block begins as the identity.
        self.gains = nn.Parameter(torch.zeros(depth)) if variant.branch == "zero-init" else None
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            y = self.act(norm(conv(x)))  # (N, width, H, W)
            if self.gains is not None:
                y = self.gains[i] * y
            x = x + self.scale * y if self.residual else y
        return self.head(x.mean(dim=(2, 3)))  # (N, width) -> (N, num_classes)


def init_weights(model: Stack, init: str) -> None:
    """``"he"``: Kaiming-normal conv weights and zero biases; ``"default"``: leave PyTorch's init."""
    if init == "default":
        return
    if init != "he":
        raise CnnlabError(f"--init {init!r} is unknown; choose 'he' or 'default'")
    for conv in model.layers:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)


def _measure(model: Stack, variant: Variant, x: torch.Tensor, labels: torch.Tensor, step: int,
             diverged_at: int | None) -> Measurement:
    """One forward/backward on the measurement batch; the grads are cleared again afterwards."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    grads = tuple(float(conv.weight.grad.norm()) for conv in model.layers)
    weights = tuple(float(conv.weight.detach().norm()) for conv in model.layers)
    model.zero_grad(set_to_none=True)
    if diverged_at is not None:
        grads = tuple(math.nan for _ in grads)
    return Measurement(variant, grads, weights, loss.item(), step, diverged_at)


def _train(model: Stack, steps: int, lr: float, batch: tuple[int, ...], seed: int,
           on_step: Callable[[], None] | None) -> int | None:
    """``steps`` of SGD (momentum 0.9) on fresh random batches with random labels, the same batches
    for every variant; returns the step whose loss was non-finite, or None."""
    gen = torch.Generator().manual_seed(seed + 1)  # not the measurement batch's stream
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step in range(1, steps + 1):
        x = torch.randn(*batch, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 10, (batch[0],), generator=gen)
        loss = F.cross_entropy(model(x), labels)
        if not torch.isfinite(loss):
            return step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step()
    return None


def gradient_norms(depth: int = 30, *, width: int = 16, size: int = 8, batch: int = 16, seed: int = 0,
                   init: str = "he", steps: int = 0, lr: float = 0.01,
                   variants: tuple[Variant, ...] = VARIANTS,
                   on_step: Callable[[], None] | None = None) -> tuple[list[Measurement], list[Measurement]]:
    """Measure every variant at initialisation and, with ``steps`` > 0, after that many SGD steps.

    Returns (at initialisation, after training); the second list is empty when ``steps`` is 0.
    ``on_step`` is called after every training step (a progress bar).
    """
    if depth < 2:
        raise CnnlabError(f"--depth must be at least 2 to compare first and last layers, got {depth}")
    if depth > MAX_DEPTH:  # float64 activations of every layer are kept for the backward pass
        raise CnnlabError(f"--depth {depth} is more than {MAX_DEPTH} layers (memory grows with depth); the effect "
                          "shows by depth 30")
    if steps < 0:
        raise CnnlabError(f"--steps must be 0 (measure at initialisation only) or more, got {steps}")
    if not lr > 0:
        raise CnnlabError(f"--lr must be positive, got {lr}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, size, size, generator=gen, dtype=torch.float64)  # (N, C, H, W), shared
    labels = torch.randint(0, 10, (batch,), generator=gen)
    at_init, trained = [], []
    threads = torch.get_num_threads()
    # Tensors of 16 x 16 x 8 x 8 are too small to share out: a second thread only adds waiting
    # (3x slower on a busy 2-core machine). The caller's setting is restored.
    torch.set_num_threads(1)
    try:
        for variant in variants:
            torch.manual_seed(seed)  # identical initial conv weights in every variant
            model = Stack(depth, width, variant)
            init_weights(model, init)
            model = model.double()
            at_init.append(_measure(model, variant, x, labels, 0, None))
            if steps:
                diverged = _train(model, steps, lr, x.shape, seed, on_step)
                trained.append(_measure(model, variant, x, labels, steps, diverged))
    finally:
        torch.set_num_threads(threads)
    return at_init, trained


def format_table(results: list[Measurement]) -> list[tuple[str, ...]]:
    """Rows (variant, first-layer norm, last-layer norm, first/last, largest grad/weight, verdict)."""
    def number(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.2e}"

    return [(r.name, number(r.grad_norms[0]), number(r.grad_norms[-1]), number(r.ratio), number(r.relative),
             r.verdict) for r in results]


TABLE_COLUMNS = ("variant", "first layer", "last layer", "first / last", "max grad / weight", "verdict")


def findings(results: list[Measurement]) -> list[str]:
    """One sentence per variant, with its numbers (the README quotes them)."""
    out = []
    for r in results:
        first, last = r.grad_norms[0], r.grad_norms[-1]
        when = "at initialisation" if r.step == 0 else f"after {r.step} SGD steps"
        if r.verdict == "diverged":
            out.append(f"{r.name} {when}: the loss became non-finite at step {r.diverged_at} (exploded)")
        elif r.verdict == "zero":
            out.append(f"{r.name} {when}: every conv gradient is exactly 0 (each block starts as the "
                       "identity; only the branch scalars learn in the first step)")
        else:
            out.append(f"{r.name} {when}: first layer {first:.1e}, last {last:.1e} (ratio {r.ratio:.1e}; "
                       f"largest gradient {r.relative:.1e}x its weights): {r.verdict}")
    return out


def to_record(at_init: list[Measurement], trained: list[Measurement], settings: dict[str, Any],
              plot_name: str) -> dict[str, Any]:
    """The experiment's JSON record (cnnlab.experiments.record): settings, tables, every layer's norms."""
    def rows(results: list[Measurement]) -> list[dict[str, Any]]:
        return [{"variant": r.name, "step": r.step, "verdict": r.verdict, "loss": r.loss, "ratio": r.ratio,
                 "max_relative": r.relative, "diverged_at": r.diverged_at, "grad_norms": list(r.grad_norms),
                 "weight_norms": list(r.weight_norms)} for r in results]

    table_rows = [["at init", *row] for row in format_table(at_init)]
    table_rows += [[f"after {r.step} steps", *row] for r, row in zip(trained, format_table(trained), strict=True)]
    return {
        "experiment": "vanishing-gradients",
        "title": f"Vanishing and exploding gradients, depth {settings['depth']}",
        "shows": ("Weight-gradient norm of every layer of deep conv stacks: the plain sigmoid stack's "
                  "gradient vanishes towards the input, a residual ReLU stack without normalisation "
                  "explodes, and BN in the branch, a 1/sqrt(depth) scale or a zero-initialised branch "
                  "keep it level and at a usable scale."),
        "settings": settings,
        "table": {"columns": ["when", *TABLE_COLUMNS], "rows": table_rows},
        "findings": findings(at_init) + findings(trained),
        "plots": [plot_name],
        "at_init": rows(at_init),
        "after_training": rows(trained),
    }


def plot(at_init: list[Measurement], trained: list[Measurement], path: str | Path) -> Path:
    """Gradient norm per layer on a log scale, one line per variant (a second panel after training)."""
    from cnnlab.render.lines import Line, Panel, plot_panels

    panels = []
    for results in [at_init] + ([trained] if trained else []):
        lines = []
        for r in results:
            # Exact zeros and NaNs cannot go on a log axis: they are gaps, and the legend says why.
            values = [v if v > 0 and math.isfinite(v) else math.nan for v in r.grad_norms]
            label = r.name if r.verdict not in ("zero", "diverged") else f"{r.name} ({r.verdict}: not drawn)"
            lines.append(Line(label, range(1, len(values) + 1), values, "-" if r.variant.residual else "--",
                              marker="."))
        step = results[0].step
        when = "at initialisation" if step == 0 else f"after {step} SGD steps"
        panels.append(Panel(f"depth {len(results[0].grad_norms)}, {when}", lines,
                            "layer (1 = nearest the input)", "weight gradient norm", log=True))
    return plot_panels(panels, path, "Gradient norm per layer", panel_size=(7.5, 4.8), legend_size=7)
