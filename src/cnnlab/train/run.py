"""`load_run(run_dir)`: a trained run directory back as a model in eval mode plus its preprocessing.

eval, predict, export, explain and report use only this. It reads config.json and safetensors files
(never pickle), so a run directory is safe to receive from someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.tasks import Task, get_task
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.loop import Normalize
from cnnlab.train.metrics import read_metrics


@dataclass
class LoadedRun:
    """A run directory's model (eval mode, on ``device``), config, task and preprocessing."""

    run_dir: Path
    model: nn.Module
    config: dict[str, Any]
    task: Task
    class_names: list[str]
    preprocess: Normalize  # uint8 (N, C, H, W) -> the model's float input
    history: list[dict[str, Any]]
    device: torch.device

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.config["preprocess"]["image_size"]
        return (h, w)

    @property
    def in_channels(self) -> int:
        return int(self.config["preprocess"]["in_channels"])


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU; a name torch does not know, or a
    GPU that is not there, is a user error (not torch's RuntimeError / AssertionError)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` from config.json and load model.safetensors into it."""
    from cnnlab.models import create_model

    run_dir = Path(run_dir)
    if not (run_dir / ckpt.CONFIG).exists():
        hint = "the folder does not exist" if not run_dir.exists() else f"it has no {ckpt.CONFIG}"
        raise CnnlabError(f"{run_dir} is not a run directory ({hint}); train one with `cnnlab train ... --out {run_dir}`")
    if not (run_dir / ckpt.MODEL).exists():
        raise CnnlabError(f"{run_dir} has no {ckpt.MODEL} yet: training has not finished an epoch; "
                          "continue it with `cnnlab train ... --resume`")
    config = ckpt.read_json(run_dir / ckpt.CONFIG)
    task = get_task(config["task"], **config.get("task_options", {}))
    model = create_model(config["model"]["name"], **config["model"]["kwargs"])
    ckpt.load_model_weights(run_dir / ckpt.MODEL, model)
    device = resolve_device(str(device))
    model = model.to(device).eval()
    pre = config["preprocess"]
    return LoadedRun(run_dir, model, config, task, list(config["class_names"]),
                     Normalize(pre["mean"], pre["std"]), read_metrics(run_dir), device)
