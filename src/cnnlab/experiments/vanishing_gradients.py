"""Vanishing gradients, made visible: deep plain stacks vs the same stacks with residual shortcuts.

Four variants of one ``depth``-layer stack of 3x3 convs (``width`` channels, no normalisation, so
nothing hides the effect): plain or residual (``x + act(conv(x))``) and sigmoid or ReLU. Every
variant starts from the SAME weights (one seed), sees the same random batch and labels, and does one
backward pass of a cross-entropy loss; we record the gradient norm of every layer's weight.

What it shows: through a plain sigmoid stack the gradient shrinks by roughly the same factor per
layer (sigmoid' <= 1/4), so the first layers get almost nothing; the identity path of a residual
stack carries the gradient back unchanged, so the first layer still gets a useful gradient.

Initialisation matters and is a choice here: ``init="he"`` (default; Kaiming-normal weights, zero
biases, the initialisation designed for ReLU) keeps a plain ReLU stack's gradients level, so the
sigmoid is the culprit; ``init="default"`` uses PyTorch's default (fan-in uniform, smaller), under which
even the plain ReLU stack fades and only the shortcuts save it. Without normalisation a residual
ReLU stack under He init grows (each block roughly doubles the variance), so its norms are large but
level: the reason real ResNets put batch norm inside the branch. The computation runs in float64 so
that tiny norms are reported rather than underflowing to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write

VARIANTS = (("plain", "sigmoid"), ("plain", "relu"), ("residual", "sigmoid"), ("residual", "relu"))


@dataclass(frozen=True)
class VariantResult:
    """One variant's weight-gradient norms, first layer (input side) to last."""

    kind: str  # "plain" or "residual"
    act: str  # "sigmoid" or "relu"
    grad_norms: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.kind} {self.act}"


class Stack(nn.Module):
    """``depth`` x [3x3 conv -> act], each optionally wrapped as ``x + act(conv(x))``; GAP + linear head."""

    def __init__(self, depth: int, width: int, act: str, residual: bool, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.act = nn.Sigmoid() if act == "sigmoid" else nn.ReLU()
        self.residual = residual
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.layers:
            y = self.act(conv(x))  # (N, width, H, W)
            x = x + y if self.residual else y
        return self.head(x.mean(dim=(2, 3)))  # (N, width) -> (N, num_classes)


def init_weights(model: Stack, init: str) -> None:
    """``"he"``: Kaiming-normal conv weights and zero biases; ``"default"``: leave PyTorch's init."""
    if init == "default":
        return
    if init != "he":
        raise CnnlabError(f"unknown init {init!r}; choose 'he' or 'default'")
    for conv in model.layers:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)


def gradient_norms(depth: int = 30, *, width: int = 16, size: int = 8, batch: int = 16, seed: int = 0,
                   init: str = "he") -> list[VariantResult]:
    """Run the four variants once each and return their per-layer weight-gradient norms."""
    if depth < 2:
        raise CnnlabError(f"--depth must be at least 2 to compare first and last layers, got {depth}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, size, size, generator=gen, dtype=torch.float64)  # (N, C, H, W), shared
    labels = torch.randint(0, 10, (batch,), generator=gen)
    results = []
    for kind, act in VARIANTS:
        torch.manual_seed(seed)  # identical initial weights in every variant
        model = Stack(depth, width, act, residual=kind == "residual")
        init_weights(model, init)
        F.cross_entropy(model.double()(x), labels).backward()
        norms = tuple(float(conv.weight.grad.norm()) for conv in model.layers)
        results.append(VariantResult(kind, act, norms))
    return results


def format_table(results: list[VariantResult]) -> list[tuple[str, str, str, str]]:
    """Rows (variant, first-layer norm, last-layer norm, first/last ratio) for printing."""
    rows = []
    for r in results:
        first, last = r.grad_norms[0], r.grad_norms[-1]
        ratio = first / last if last > 0 else float("inf")
        rows.append((r.name, f"{first:.3e}", f"{last:.3e}", f"{ratio:.3e}"))
    return rows


def plot(results: list[VariantResult], path: str | Path) -> Path:
    """Gradient norm per layer, one line per variant, on a log scale; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        style = "-" if r.kind == "residual" else "--"
        # A norm that underflowed to exactly 0 cannot go on a log axis; clip it to the smallest float.
        values = [max(v, torch.finfo(torch.float64).tiny) for v in r.grad_norms]
        ax.plot(range(1, len(values) + 1), values, style, marker=".", label=r.name)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = nearest the input)")
    ax.set_ylabel("weight gradient norm")
    ax.set_title(f"Gradient norm per layer, depth {len(results[0].grad_norms)}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        return atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    finally:
        plt.close(fig)
