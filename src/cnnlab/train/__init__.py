"""The one training engine (loop, precision, checkpoints, distributed) shared by every task.

``fit(TrainConfig(...))`` trains into a run directory; ``load_run(run_dir)`` gives it back as a model in
eval mode with its preprocessing. Submodules are imported on first use so that importing the package
stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FitResult", "LoadedRun", "TrainConfig", "fit", "load_run"]


def __getattr__(name: str) -> Any:
    if name in ("fit", "FitResult"):
        from cnnlab.train import runner

        return getattr(runner, name)
    if name in ("load_run", "LoadedRun"):  # the run directory has its own module; kept here for old imports
        from cnnlab import rundir

        return getattr(rundir, name)
    if name == "TrainConfig":
        from cnnlab.train.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'cnnlab.train' has no attribute {name!r}")
