"""The confusion matrix as an image: rows are true classes, columns predicted, each row normalised."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cnnlab.files import atomic_write


def plot_confusion(matrix: torch.Tensor, class_names: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix with the counts written in each cell; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.as_tensor(matrix).double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(counts)
    size = min(3 + 0.45 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    try:
        im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
        names = list(class_names)[:n] + [str(i) for i in range(len(class_names), n)]
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalised)")
        if n <= 20:  # counts stay legible up to about 20 classes
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        return atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)
