"""Run-directory files: atomic writes, weights and resume state as safetensors + JSON (never pickle).

``model.safetensors`` holds the weights and buffers; ``state.safetensors`` the optimizer's tensors and
the RNG states; ``state.json`` the plain numbers (epoch, step, optimizer hyper-parameters). Each file
is replaced atomically, and all three record the step they belong to, so a crash between two writes
is detected on resume instead of silently mixing two checkpoints.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnlab.errors import CnnlabError

CONFIG = "config.json"
MODEL = "model.safetensors"
STATE = "state.safetensors"
STATE_JSON = "state.json"
METRICS = "metrics.jsonl"


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a damaged file (edited by hand, cut short by a full disk) is a user error."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{path} is damaged (not valid JSON: {exc}); restore it from a copy or train "
                          "a new run") from None


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared CPU tensors (channels_last weights are neither).
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save_model(path: Path, model: nn.Module, step: int) -> Path:
    """The model's state_dict (weights and buffers) as safetensors, tagged with ``step``."""
    tensors = _cpu_tensors(model.state_dict())
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"step": str(step)}))


def load_model_weights(path: Path, model: nn.Module) -> int:
    """Load ``path`` into ``model`` (strict); returns the step recorded with the weights."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            step = int((f.metadata() or {}).get("step", -1))
        model.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, RuntimeError) as exc:  # a cut file, or weights of another model/config
        raise CnnlabError(f"{path} cannot be loaded into the model its config.json describes "
                          f"({str(exc).splitlines()[0]}); the run directory is damaged or mixed: "
                          "restore it or train a new run") from None
    return step


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
    tensors = _cpu_tensors(tensors)
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
