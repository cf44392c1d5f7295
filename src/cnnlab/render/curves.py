"""Training curves from a run's metrics history: loss (train and val) and the task's metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.files import atomic_write


def plot_curves(history: list[dict[str, Any]], path: Path, metric: str = "top1") -> Path:
    """Two panels over epochs: train/val loss, and val ``metric`` when recorded; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    try:
        ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
        if history and "val_loss" in history[0]:
            ax_loss.plot(epochs, [row.get("val_loss") for row in history], "o-", label="val")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_loss.legend()
        key = f"val_{metric}"
        if history and key in history[-1]:
            ax_metric.plot(epochs, [row.get(key) for row in history], "o-", color="tab:green")
            ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
        else:
            ax_metric.set_axis_off()
        for ax in (ax_loss, ax_metric):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)
