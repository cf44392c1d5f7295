"""`cnnlab experiment`: small experiments that make a lecture point visible."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def experiment() -> None:
    """Small experiments that make a lecture point visible."""


@experiment.command("vanishing-gradients", short_help="Gradient norm per layer: plain vs residual, sigmoid vs ReLU.")
@click.option("--depth", type=int, default=30, show_default=True, help="Conv layers per stack.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("vanishing-gradients"), show_default=True, help="Folder for the plot.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, batch and labels.")
@click.option("--init", type=click.Choice(["he", "default"]), default="he", show_default=True,
              help="Kaiming-normal weights, or PyTorch's default initialisation.")
def vanishing_gradients(depth: int, out_dir: Path, seed: int, init: str) -> None:
    """Plain vs residual stacks, sigmoid vs ReLU: one backward pass each, gradient norm per layer.

    Writes OUT/vanishing_gradients.png (log scale) and prints first- and last-layer norms.
    """
    from rich.console import Console
    from rich.table import Table

    from cnnlab.experiments.vanishing_gradients import format_table, gradient_norms, plot

    results = gradient_norms(depth, seed=seed, init=init)
    path = plot(results, out_dir / "vanishing_gradients.png")
    table = Table(title=f"weight gradient norms, depth {depth}, init {init}, seed {seed}")
    for col in ("variant", "first layer", "last layer", "first / last"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in format_table(results):
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"plot: {path}")
