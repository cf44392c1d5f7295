"""`cnnlab demo` (interim): the textbook tour of the exact ops, with no training and no downloads.

The full training demo replaces this module later; the tour stays reachable as `cnnlab ops tour`.
"""

from __future__ import annotations

import click

INTERIM = True  # tests of the tour-as-demo skip once the training demo replaces this module


@click.command("demo")
def demo() -> None:
    """Walk through a convolution, pooling, a transposed conv and the shape arithmetic."""
    from rich.console import Console

    from cnnlab.ops.tour import run_tour

    run_tour(Console().print)
