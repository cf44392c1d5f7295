"""Named training recipes: sets of TrainConfig overrides that `cnnlab train --recipe NAME` applies
before the options given on the command line (which still win).

(Minimal version created by the trainer; the speed engineer owns this module and adds the fast
CIFAR recipe.)
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import unknown

RECIPES: dict[str, dict[str, Any]] = {
    # What `cnnlab demo` uses: mini_xception on 64x64 shapes in about two minutes on a laptop CPU.
    "shapes-demo": {"epochs": 8, "batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4,
                    "schedule": "onecycle", "warmup": 0.15, "augment": "flip"},
}


def get_recipe(name: str) -> dict[str, Any]:
    """A copy of recipe ``name``'s overrides (TrainConfig field -> value)."""
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    return dict(RECIPES[name])
