"""The training progress bar (rich): epoch, loss, the task's metric, images/s and time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(enabled: bool, console: Console | None = None) -> Progress:
    """A rich Progress; disabled (prints nothing) on non-main ranks or when ``enabled`` is False."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True, soft_wrap=True),
        disable=not enabled,
        transient=False,
    )
