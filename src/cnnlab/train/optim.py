"""Optimizer construction (weight decay on weights only) and the per-step learning-rate schedule.

The schedule is a pure function of the step, so resuming needs only the step number and the learning
rate can be checked against hand-computed values at the warm-up boundaries.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: module types whose parameters are normalisation scales and shifts (a custom norm layer, such as a
#: channels-first LayerNorm2d, is recognised by 'Norm' in its class name)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, *([nn.RMSNorm] if hasattr(nn, "RMSNorm") else []),
)


def is_norm_layer(module: nn.Module) -> bool:
    """True for BatchNorm / InstanceNorm / GroupNorm / LayerNorm / RMSNorm and custom '*Norm*' layers."""
    return isinstance(module, NORM_TYPES) or "Norm" in type(module).__name__


def norm_parameters(model: nn.Module) -> set[int]:
    """The ids of the parameters owned directly by the model's norm layers."""
    return {id(p) for m in model.modules() if is_norm_layer(m) for p in m.parameters(recurse=False)}


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None, norm_lr_scale: float = 1.0
                 ) -> list[dict]:
    """Conv/linear weights (decayed) and norm weights and biases (never decayed), plus, when
    ``norm_lr_scale`` is not 1, a third group of norm-layer parameters at ``lr * norm_lr_scale``.

    Decaying a norm layer's scale or a bias only pulls it towards zero without regularising the
    function (they do not multiply a growing input), so the common practice is to exempt them; the
    rule used here is 'tensors with fewer than 2 dimensions are exempt', which covers both.

    A scaled norm group follows airbench (Keller Jordan), whose 92-94% CIFAR-10 runs train BatchNorm
    biases at 64x the lr: they get ``weight_decay / norm_lr_scale``. torch's SGD and AdamW both shrink
    a parameter by ``lr * weight_decay`` per step, so that is exactly the conv weights' decay per
    step: the larger lr speeds up how fast the shifts follow their gradients without making the pull
    towards zero 64x stronger. The decay is not dropped there as it is at scale 1 because a 64x lr
    with momentum lets the shifts drift far on noisy gradients and airbench's accuracy was measured
    with that mild decay holding them back. At 1.0 the two groups (and so old checkpoints' optimizer
    state) stay exactly as they were. Each group records its ``lr_scale``; ``set_lr`` applies it.
    """
    norms = norm_parameters(model) if norm_lr_scale != 1.0 else set()
    decay, no_decay, norm = [], [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in norms:
            norm.append(param)
        else:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if norm_lr_scale != 1.0:
        groups.append({"params": norm, "weight_decay": weight_decay / norm_lr_scale, "lr_scale": norm_lr_scale})
        if lr is not None:
            groups[-1]["lr"] = lr * norm_lr_scale
    return groups


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float,
                   norm_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW (``momentum`` is its beta1); see ``param_groups``."""
    groups = param_groups(model, weight_decay, lr, norm_lr_scale)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(step: int, total_steps: int, peak_lr: float, warmup: float, schedule: str, start: float = 0.0,
          end: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Both schedules rise linearly over the first ``warmup_steps = round(warmup * total_steps)`` steps,
    from ``peak_lr / warmup_steps`` (``start`` 0) or ``start * peak_lr`` (+ one step's rise) to
    ``peak_lr``; then 'onecycle' falls linearly and 'cosine' along a half cosine, both reaching
    ``end * peak_lr`` after the last step. airbench's triangle is onecycle with warm-up 0.23, start
    0.2 and end 0.07.
    """
    warmup_steps = round(warmup * total_steps)
    if step < warmup_steps:
        if start == 0.0:  # the original expression, so default runs keep their exact lr values
            return peak_lr * (step + 1) / warmup_steps
        return peak_lr * (start + (1.0 - start) * (step + 1) / warmup_steps)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)  # 0 at the peak, -> 1 at the end
    if schedule == "onecycle":
        if end == 0.0:
            return peak_lr * (1.0 - progress)
        return peak_lr * (1.0 - (1.0 - end) * progress)
    if schedule == "cosine":
        if end == 0.0:
            return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return peak_lr * (end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr`` times the group's ``lr_scale`` (1 when it has none)."""
    for group in optimizer.param_groups:
        scale = group.get("lr_scale", 1.0)
        group["lr"] = lr * scale if scale != 1.0 else lr
