"""Optimizer construction (weight decay on weights only) and the per-step learning-rate schedule.

The schedule is a pure function of the step, so resuming needs only the step number and the learning
rate can be checked against hand-computed values at the warm-up boundaries.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights (decayed) and norm weights and biases (never decayed).

    Decaying a norm layer's scale or a bias only pulls it towards zero without regularising the
    function (they do not multiply a growing input), so the common practice is to exempt them; the
    rule used here is 'tensors with fewer than 2 dimensions are exempt', which covers both.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float
                   ) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW (``momentum`` is its beta1)."""
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(step: int, total_steps: int, peak_lr: float, warmup: float, schedule: str) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Both schedules rise linearly from ``peak_lr / warmup_steps`` to ``peak_lr`` over the first
    ``warmup_steps = round(warmup * total_steps)`` steps; then 'onecycle' falls linearly and 'cosine'
    along a half cosine, both reaching 0 after the last step.
    """
    warmup_steps = round(warmup * total_steps)
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)  # 0 at the peak, -> 1 at the end
    if schedule == "onecycle":
        return peak_lr * (1.0 - progress)
    if schedule == "cosine":
        return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
