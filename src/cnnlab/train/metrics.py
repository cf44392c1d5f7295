"""metrics.jsonl: one JSON object per finished epoch, appended atomically (rewrite + rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.files import atomic_write
from cnnlab.rundir import METRICS, read_metrics

#: keys every line has; validation metrics are prefixed 'val_' (val_loss, val_top1, val_top5, ...)
REQUIRED_KEYS = ("epoch", "step", "train_loss", "lr", "images_per_s", "seconds")


def append_metrics(run_dir: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``row`` (dropping any later epochs left by an interrupted run) and return the history."""
    history = [r for r in read_metrics(run_dir) if r["epoch"] < row["epoch"]] + [row]
    text = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(Path(run_dir) / METRICS, lambda p: p.write_text(text))
    return history
