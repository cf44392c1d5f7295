"""Predict files with a run directory: what the run's task predicts for each image."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def predict_files(run_dir: str | Path, inputs: list[str], out: Path | None = None, device: str = "cpu",
                  precision: str = "run", **options: Any) -> list[dict[str, Any]]:
    """One row per readable input, made by the run's task (classify: top-k classes; segment: mask and
    overlay PNGs; superres: the upscaled PNG). ``options`` are the task's predict options; ``precision``
    as in ``cnnlab.app.inference.fast_inference`` ('run': the run's training precision)."""
    from cnnlab.app.inference import load_fast

    run = load_fast(run_dir, device, precision)
    return run.task.predict_files(run, inputs, out, options)
