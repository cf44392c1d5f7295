"""Line plots in side-by-side panels: several runs or variants compared on one figure.

The experiments draw with it (error curves of four networks, gradient norm per layer); it only
draws what it is handed. NaN values leave a gap, which is how a log-scale panel skips exact zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.files import atomic_write


@dataclass(frozen=True)
class Line:
    """One curve: ``y`` over ``x`` with a matplotlib line style (``"-"``, ``"--"``), colour and width."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: str = "-"
    color: str | None = None
    width: float = 1.5
    marker: str | None = None


@dataclass(frozen=True)
class Panel:
    """One axes: its title, lines and axis labels; ``log`` puts y on a log scale."""

    title: str
    lines: Sequence[Line]
    xlabel: str = ""
    ylabel: str = ""
    log: bool = False
    integer_x: bool = False  # ticks on whole numbers only (epochs)


def plot_panels(panels: Sequence[Panel], path: str | Path, title: str = "", share_y: bool = False,
                panel_size: tuple[float, float] = (6.0, 4.2), legend_size: float = 8) -> Path:
    """The panels side by side (one shared y range with ``share_y``), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    width, height = panel_size
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height + (0.4 if title else 0)),
                             squeeze=False, sharey=share_y)
    try:
        for ax, panel in zip(axes[0], panels, strict=True):
            for line in panel.lines:
                ax.plot(list(line.x), list(line.y), line.style, color=line.color, linewidth=line.width,
                        marker=line.marker, label=line.label)
            if panel.log:
                ax.set_yscale("log")
            if panel.integer_x:
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
            ax.grid(True, which="major", alpha=0.3)
            if panel.lines:
                ax.legend(fontsize=legend_size)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return atomic_write(Path(path), lambda p: fig.savefig(p, dpi=110, format="png"))
    finally:
        plt.close(fig)
