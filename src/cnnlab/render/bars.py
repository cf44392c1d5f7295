"""A horizontal bar chart of one value per name (per-class IoU, for example); NaN bars are marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cnnlab.files import atomic_write


def plot_bars(values: Sequence[float], names: Sequence[str], path: Path, title: str = "", xlabel: str = "",
              limit: tuple[float, float] = (0.0, 1.0)) -> Path:
    """One bar per name with its value written beside it ('n/a' where the value is NaN); atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [0.0 if math.isnan(v) else v for v in values]
    fig, ax = plt.subplots(figsize=(6, 0.9 + 0.32 * len(values)))
    try:
        bars = ax.barh(range(len(values)), shown, color="#4878a8")
        ax.set_yticks(range(len(values)), list(names))
        ax.invert_yaxis()  # first class on top, as in the tables
        ax.set_xlim(*limit)
        ax.set(title=title, xlabel=xlabel)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_width() + 0.01 * (limit[1] - limit[0]), bar.get_y() + bar.get_height() / 2,
                    "n/a" if math.isnan(v) else f"{v:.3f}", va="center", fontsize=8)
        fig.tight_layout()
        return atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)
