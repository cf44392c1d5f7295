"""The Task interface the trainer, eval and predict rely on (one small class per task)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch


class Meter(ABC):
    """Accumulates a task's metrics over batches; ``compute()`` returns plain floats."""

    @abstractmethod
    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Add one batch: raw model outputs, targets, and the batch's mean loss."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Metric name -> value over everything added so far (``loss`` always included)."""

    def state(self) -> torch.Tensor:
        """The running sums as one float64 tensor, so that distributed ranks can all-reduce them."""
        raise NotImplementedError(f"{type(self).__name__} cannot be reduced across processes")

    def load_state(self, sums: torch.Tensor) -> None:
        """Replace the running sums by ``sums`` (for example the all-reduced ones)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be reduced across processes")


class Task(ABC):
    """What one task means: outputs for N classes, loss, metrics, predictions."""

    name: str = ""
    #: the metric that the progress bar shows and that 'best' refers to
    primary_metric: str = "loss"
    #: True when targets are images or masks that augmentation must transform like the inputs
    spatial_targets: bool = False

    @abstractmethod
    def num_outputs(self, num_classes: int) -> int:
        """How many output channels the model's head needs for ``num_classes`` classes."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch (a scalar tensor)."""

    @abstractmethod
    def meter(self, num_classes: int) -> Meter:
        """A fresh metric accumulator for an evaluation pass."""

    @abstractmethod
    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw model outputs -> the task's prediction (class probabilities, masks, images, ...)."""

    def options(self) -> dict[str, Any]:
        """The options this task was built with (recorded in a run's config.json)."""
        return {}
