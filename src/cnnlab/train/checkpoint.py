"""Training state in a run directory: the weights (see ``cnnlab.rundir``) and resume state as safetensors + JSON (never pickle).

``model.safetensors`` holds the weights and buffers; ``state.safetensors`` the optimizer's tensors and
the RNG states; ``state.json`` the plain numbers (epoch, step, optimizer hyper-parameters). Each file
is replaced atomically, and all three record the step they belong to, so a crash between two writes
is detected on resume instead of silently mixing two checkpoints. Before the files are replaced, the
complete checkpoint they hold is hard-linked into ``.previous/``; a run killed between two writes
resumes from that one (``recover``), so no kill leaves a run that cannot resume.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
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

__all__ = ["CONFIG", "FILES", "METRICS", "MODEL", "PREVIOUS", "STATE", "STATE_JSON", "atomic_write",
           "check_consistent", "keep_previous", "load_model_weights", "load_state", "read_json", "recover",
           "save_model", "save_state", "write_json"]

FILES = (MODEL, STATE, STATE_JSON)  # every checkpoint's files; the lookahead EMA's file joins them when used
PREVIOUS = ".previous"  # the last complete checkpoint, kept while the next one is written


class CheckpointWarning(UserWarning):
    """A checkpoint write was interrupted; the run resumes from the complete one before it."""


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


def _steps(folder: Path, names: Sequence[str]) -> dict[str, int]:
    """The step each checkpoint file in ``folder`` records (-1 where it records none)."""
    from safetensors import safe_open

    steps = {}
    for name in names:
        if name.endswith(".json"):
            steps[name] = int(read_json(folder / name)["step"])
        else:
            with safe_open(str(folder / name), framework="pt") as f:
                steps[name] = int((f.metadata() or {}).get("step", -1))
    return steps


def _complete(folder: Path, names: Sequence[str]) -> int | None:
    """The step of the checkpoint in ``folder`` when all its files are there and agree, else None."""
    if not all((folder / name).is_file() for name in names):
        return None
    try:
        steps = set(_steps(folder, names).values())
    except Exception:  # a cut or foreign file: safetensors and json raise their own error types
        return None
    return steps.pop() if len(steps) == 1 else None


def _link(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content: a hard link (free, and the old inode lives on when
    ``source`` is replaced by rename), or a copy where the file system has no links."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def keep_previous(run_dir: Path, names: Sequence[str] = FILES) -> None:
    """Before a checkpoint is replaced: keep the complete one in ``.previous/`` (nothing to keep before
    the first, or when the files do not agree)."""
    if _complete(run_dir, names) is None:
        return
    for name in names:
        atomic_write(run_dir / PREVIOUS / name, lambda tmp, name=name: _link(run_dir / name, tmp))


def recover(run_dir: Path, names: Sequence[str] = FILES) -> None:
    """After a kill between two checkpoint writes, put the complete previous checkpoint back (with a
    warning); an error only when neither the checkpoint nor the previous one is whole."""
    if _complete(run_dir, names) is not None:
        return
    previous = run_dir / PREVIOUS
    step = _complete(previous, names)
    if step is None:
        found = {n: (run_dir / n).is_file() for n in names}
        raise CnnlabError(f"the checkpoint in {run_dir} is damaged or inconsistent (files present: {found}) and "
                          f"no complete previous checkpoint is kept in {previous}; start a new --out")
    for name in names:
        atomic_write(run_dir / name, lambda tmp, name=name: shutil.copyfile(previous / name, tmp))
    warnings.warn(f"the last checkpoint write in {run_dir} was interrupted; resuming from the complete "
                  f"checkpoint before it (step {step})", CheckpointWarning, stacklevel=2)


def check_consistent(run_dir: Path, names: Sequence[str] = FILES) -> int:
    """The step of the checkpoint in ``run_dir``; an error when its files come from different steps."""
    steps = _steps(run_dir, names)
    if len(set(steps.values())) != 1:
        raise CnnlabError(f"the checkpoint in {run_dir} is inconsistent (steps {steps}); "
                          "it was interrupted while saving: start a new --out")
    return steps[STATE_JSON]
