"""Training state in a run directory: the weights (see ``cnnlab.rundir``) and resume state as safetensors + JSON (never pickle).

``model.safetensors`` holds the weights and buffers; ``state.safetensors`` the optimizer's tensors and
the RNG states; ``state.json`` the plain numbers (epoch, step, optimizer hyper-parameters). Each file
is replaced atomically, and all three record the step they belong to, so a crash between two writes
is detected on resume instead of silently mixing two checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, read_json, write_json
from cnnlab.rundir import (
    CONFIG,
    METRICS,
    MODEL,
    STATE,
    STATE_JSON,
    cpu_tensors,
    load_model_weights,
    save_model,
)

__all__ = ["CONFIG", "METRICS", "MODEL", "STATE", "STATE_JSON", "atomic_write", "check_consistent",
           "load_model_weights", "load_state", "read_json", "save_model", "save_state", "write_json"]


def save_state(run_dir: Path, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    """Optimizer tensors and RNG states to state.safetensors; ``info`` + optimizer numbers to state.json."""
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    sd = optimizer.state_dict()
    numbers: dict[str, dict[str, Any]] = {}
    for index, param_state in sd["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                numbers.setdefault(str(index), {})[key] = value
    tensors = cpu_tensors(tensors)
    meta = {"step": str(info["step"])}
    atomic_write(run_dir / STATE, lambda p: save_file(tensors, str(p), metadata=meta))
    body = dict(info, optimizer={"param_groups": sd["param_groups"], "numbers": numbers})
    write_json(run_dir / STATE_JSON, body)


def load_state(run_dir: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer and RNG states saved by ``save_state``; returns state.json's content."""
    info = read_json(run_dir / STATE_JSON)
    tensors = load_file(str(run_dir / STATE))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, numbers in info["optimizer"]["numbers"].items():
        state.setdefault(int(index), {}).update(numbers)
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return info


def check_consistent(run_dir: Path) -> int:
    """The step of the checkpoint in ``run_dir``; an error when its files come from different steps."""
    from safetensors import safe_open

    steps = {STATE_JSON: int(read_json(run_dir / STATE_JSON)["step"])}
    for name in (MODEL, STATE):
        with safe_open(str(run_dir / name), framework="pt") as f:
            steps[name] = int((f.metadata() or {}).get("step", -1))
    if len(set(steps.values())) != 1:
        raise CnnlabError(f"the checkpoint in {run_dir} is inconsistent (steps {steps}); "
                          "it was interrupted while saving: start a new --out")
    return steps[STATE_JSON]
