"""Named training recipes: sets of TrainConfig overrides that `cnnlab train --recipe NAME` applies
before the options given on the command line (which still win).

A recipe is data, not code: each entry maps TrainConfig field names to values, with the units and
the source of every number in a comment, so `cnnlab train ... --recipe NAME` is reproducible from
config.json alone (the resolved values are written there).
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import unknown

# airbench94's hyperparameters (Keller Jordan, https://github.com/KellerJordan/airbench) are given
# "per 1024 examples" for a summed loss; cnnlab's trainer averages the loss over the batch and couples
# weight decay to the learning rate like torch.optim.SGD, so they convert as:
#   kilostep  = 1024 * (1 + 1 / (1 - momentum))            = 7850.7 for momentum 0.85
#   lr        = 11.5 / kilostep * batch_size                 = 1.5 for batch 1024 (mean loss)
#   decay     = 0.0153 * batch_size / kilostep / lr          = 1.33e-3 (torch's weight_decay, x lr per step)
_AIRBENCH_MOMENTUM = 0.85
_KILOSTEP = 1024 * (1 + 1 / (1 - _AIRBENCH_MOMENTUM))
_CIFAR_BATCH = 1024
_CIFAR_LR = 11.5 / _KILOSTEP * _CIFAR_BATCH
_CIFAR_DECAY = 0.0153 * _CIFAR_BATCH / _KILOSTEP / _CIFAR_LR

RECIPES: dict[str, dict[str, Any]] = {
    # The training settings of `cnnlab demo` (mini_xception on 10,000 32x32 shapes: 99% val top-1).
    "shapes-demo": {"epochs": 10, "batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4,
                    "schedule": "onecycle", "warmup": 0.15, "augment": "flip"},
    # CIFAR-10 in minutes with `--model cifar_fast` (airbench94's network and optimiser settings; see
    # cifar_fast.py for the lineage: Page's ResNet-9, tysam-code's hlb-CIFAR10, Jordan's airbench).
    # Five epochs: 45k images took 85 s per epoch on two AVX-512-BF16 cores at load ~2, so training
    # takes ~7 minutes and leaves room for per-epoch evaluation and checkpoints within 10; the same
    # schedule reached 92.2% in benchmarks/cifar10_time_to_acc.py (benchmarks/RESULTS.md).
    # airbench94 itself trains 9.9 epochs and adds lookahead, test-time flips and a 64x BN-bias
    # learning rate, which cnnlab's trainer does not have (`--epochs 10` gets closer to its 94%).
    "cifar10-fast": {
        "model": "cifar_fast",
        "epochs": 5,
        "batch_size": _CIFAR_BATCH,  # large batches keep the bf16 convolutions busy on few cores
        "optimizer": "sgd",  # Nesterov
        "lr": round(_CIFAR_LR, 4),  # peak, per batch-mean loss
        "momentum": _AIRBENCH_MOMENTUM,
        "weight_decay": round(_CIFAR_DECAY, 6),
        "schedule": "onecycle",  # triangular: up for the first 23% of steps, then linearly down
        "warmup": 0.23,
        "label_smoothing": 0.2,
        "augment": "flip-crop",  # mirror + random translation (reflect padding)
    },
}


def get_recipe(name: str) -> dict[str, Any]:
    """A copy of recipe ``name``'s overrides (TrainConfig field -> value); unknown names get did-you-mean."""
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    return dict(RECIPES[name])
