"""Experiments that train: every model becomes an ordinary run directory ``OUT/<model>``, trained by
``cnnlab.train.runner.fit`` with one named recipe, so `cnnlab eval`, `report`, `explain` work on each.

Running an experiment again continues what is there: a finished run is only read back, a shorter
one is resumed up to the new ``--epochs``, and a run made with other settings is refused by the
trainer's own check (it names the setting that differs).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cnnlab.rundir import CONFIG, read_metrics
from cnnlab.train.config import TrainConfig, apply_overrides
from cnnlab.train.recipes import get_recipe


@dataclass(frozen=True)
class TrainedRun:
    """One trained model of an experiment: its run directory, history and size."""

    model: str
    run_dir: Path
    history: list[dict[str, Any]]
    config: dict[str, Any]
    params: int
    macs: int  # multiply-adds of one example's forward pass at the training input size

    def last(self, key: str) -> float:
        """``key`` of the last epoch (NaN when the run did not record it)."""
        return float(self.history[-1].get(key, float("nan"))) if self.history else float("nan")

    def curve(self, key: str) -> list[float]:
        return [float(row.get(key, float("nan"))) for row in self.history]

    @property
    def images_per_s(self) -> float:
        """Median training throughput over the epochs (the first one pays for warm-up and kernel builds)."""
        return statistics.median(self.curve("images_per_s")) if self.history else float("nan")

    @property
    def minutes(self) -> float:
        """Wall time of all epochs, evaluation and checkpoints included."""
        return sum(self.curve("seconds")) / 60

    @property
    def train_size(self) -> int:
        """Training examples per epoch (0 when the run did not record it)."""
        return int(self.config.get("data", {}).get("train_size") or 0)

    @property
    def val_size(self) -> int:
        """Held-out examples every validation figure is measured on (0 when unknown)."""
        return int(self.config.get("data", {}).get("val_size") or 0)

    @property
    def threads(self) -> int | None:
        """CPU threads the run trained with (speeds depend on it; None when not recorded)."""
        return self.config.get("resolved", {}).get("threads")


def train_config(model: str, data: str, run_dir: Path, recipe: str, overrides: dict[str, Any]) -> TrainConfig:
    """The recipe's settings for ``model``, then ``overrides`` (None values are left to the recipe)."""
    cfg = TrainConfig(task="classify", data=data, model=model, out=str(run_dir))
    cfg = apply_overrides(cfg, get_recipe(recipe), f"recipe {recipe!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(apply_overrides(cfg, given, "the experiment's options"), recipe=recipe)


def model_cost(name: str, kwargs: dict[str, Any], input_size: Sequence[int]) -> tuple[int, int]:
    """(parameters, multiply-adds per example) of a registered model, counted on the meta device."""
    from cnnlab.models import create_model
    from cnnlab.models._summary import summarize

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = create_model(name, **kwargs)
    found = summarize(model, tuple(input_size))
    return found.total_params, found.total_macs


def read_run(model: str, run_dir: Path) -> TrainedRun:
    """A finished run directory of the experiment, with its model's size at its training input."""
    from cnnlab.files import read_json

    config = read_json(run_dir / CONFIG)
    pre = config["preprocess"]
    params, macs = model_cost(config["model"]["name"], config["model"]["kwargs"],
                              (pre["in_channels"], *pre["input_size"]))
    return TrainedRun(model, run_dir, read_metrics(run_dir), config, params, macs)


def train_models(models: Sequence[str], data: str, out: Path, recipe: str, overrides: dict[str, Any], *,
                 console: Console | None = None, progress: bool = True) -> list[TrainedRun]:
    """Train (or continue, or just read back) ``OUT/<model>`` for every model, one after the other."""
    from cnnlab.train.runner import fit

    console = console or Console(stderr=True, soft_wrap=True)
    runs = []
    for i, model in enumerate(models, 1):
        run_dir = out / model
        cfg = train_config(model, data, run_dir, recipe, overrides)
        console.print(f"[bold]{i}/{len(models)}: {model}[/] -> {run_dir}  (recipe {recipe}, {cfg.epochs} epochs)")
        fit(cfg, resume=(run_dir / CONFIG).exists(), console=console, progress=progress)
        runs.append(read_run(model, run_dir))
    return runs


def compared_runs(models: Sequence[str], data: str, out: str | Path, recipe: str, overrides: dict[str, Any] | None,
                  console: Console | None, progress: bool) -> tuple[dict[str, TrainedRun], dict[str, Any]]:
    """What every comparison starts with: ``train_models``, the runs by model name, and the record's
    ``settings`` (the data, the recipe, the options given, and the epochs trained)."""
    trained = train_models(models, data, Path(out), recipe, overrides or {}, console=console, progress=progress)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return {r.model: r for r in trained}, {"data": data, "recipe": recipe, **given, "epochs": len(trained[0].history)}


def noise_band(a: float, b: float, n: int) -> float:
    """About two standard errors of the gap between two rates (accuracies, errors) each measured on ``n``
    examples: a smaller gap is what drawing another ``n`` examples could give, so it names no winner.

    It treats the two measurements as independent, which over-states the noise a little when both nets
    are scored on the same examples: a conservative band. 0 when ``n`` is unknown.
    """
    if n <= 0 or not (0 <= a <= 1 and 0 <= b <= 1):
        return 0.0
    return min(1.0, 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n))  # a rate gap is never above 100 points


def plural(count: int, noun: str) -> str:
    """'1 epoch', '4 epochs'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def percent(value: float) -> str:
    """0.1234 -> '12.34%' ('-' for a missing value)."""
    return "-" if value != value else f"{100 * value:.2f}%"
