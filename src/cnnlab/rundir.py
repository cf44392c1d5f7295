"""The run directory as a file format: what each file holds, and ``load_run`` to read it back.

A run directory is the unit users pass around:
  config.json         everything needed to rebuild the model and its preprocessing (task, task
                      options, model name + kwargs, data info, preprocessing), the resolved training
                      config and versions
  model.safetensors   the weights and buffers (never pickle), tagged with their step
  state.safetensors,  training state for resume (optimizer tensors + RNG; plain numbers), see
  state.json          ``cnnlab.train.checkpoint``
  metrics.jsonl       one JSON object per finished epoch
  *.png               the plots

Reading a run needs this module, the model registry and the task's spec: never the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, read_json

CONFIG = "config.json"
MODEL = "model.safetensors"
STATE = "state.safetensors"
STATE_JSON = "state.json"
METRICS = "metrics.jsonl"


@dataclass
class Normalize:
    """Stored input / ``scale`` -> (x - mean) / std per channel; the run's preprocessing.

    ``scale`` is what one unit of the stored data is: 255 for uint8 NCHW pixels (which become [0, 1]),
    1 for float NCT waveforms (already in [-1, 1]). Any rank works: the statistics are per channel
    (dim 1), broadcast over the spatial or time axes.
    """

    mean: list[float]
    std: list[float]
    scale: float = 255.0
    #: return 4D batches channels_last (inference with a channels_last model: no copy in the first conv)
    channels_last: bool = False
    _tensors: dict[tuple[Any, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # The (mean, std) tensors are built once per device and rank, not on every batch (issue 15).
        key = (x.device, x.dim())
        if key not in self._tensors:
            shape = (1, -1) + (1,) * (x.dim() - 2)  # (1, C, 1, 1) for images, (1, C, 1) for waveforms
            self._tensors[key] = (torch.tensor(self.mean, device=x.device).view(shape),
                                  torch.tensor(self.std, device=x.device).view(shape))
        mean, std = self._tensors[key]
        out = (x.float() / self.scale - mean) / std
        if self.channels_last and out.dim() == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    @classmethod
    def identity(cls, channels: int, scale: float = 255.0) -> Normalize:
        return cls([0.0] * channels, [1.0] * channels, scale)

    @classmethod
    def from_images(cls, x: torch.Tensor | list[torch.Tensor], enabled: bool = True, chunk: int = 4096
                    ) -> Normalize:
        """Per-channel mean and std of uint8 images, stacked (N, C, H, W) or a list of (C, H, W)
        (identity when ``enabled`` is False); float data (waveforms (C, T)) is taken at scale 1."""
        channels = x.shape[1] if isinstance(x, torch.Tensor) else (x[0].shape[0] if x else 3)
        first = x if isinstance(x, torch.Tensor) else (x[0] if x else None)
        scale = 255.0 if first is None or first.dtype == torch.uint8 else 1.0
        if not enabled or len(x) == 0:
            return cls.identity(channels, scale)
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        count = 0
        # chunks: a float copy of all of CIFAR would be 600 MB
        parts = (x[i:i + chunk] for i in range(0, len(x), chunk)) if isinstance(x, torch.Tensor) else (t[None] for t in x)
        for part in parts:
            part = part.double() / scale
            axes = (0, *range(2, part.dim()))  # every axis but the channels
            total += part.sum(dim=axes)
            total_sq += (part * part).sum(dim=axes)
            count += part.numel() // channels
        mean = total / count
        std = (total_sq / count - mean * mean).clamp(min=1e-12).sqrt().clamp(min=1e-3)
        return cls([round(float(m), 6) for m in mean], [round(float(s), 6) for s in std], scale)


def cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared CPU tensors (channels_last weights are neither).
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save_model(path: Path, model: nn.Module, step: int) -> Path:
    """The model's state_dict (weights and buffers) as safetensors, tagged with ``step``."""
    tensors = cpu_tensors(model.state_dict())
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


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every epoch's metrics, oldest first ([] when the run has none yet)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CnnlabError(f"{path} is damaged (not UTF-8 text: {exc.reason}); restore it from a copy, or delete "
                          "it to keep the run without its history") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = exc.msg
        if not (isinstance(row, dict) and "epoch" in row):  # a cut line, or one edited by hand
            raise CnnlabError(f"{path} line {number} is damaged ({row if isinstance(row, str) else 'not an epoch row'});"
                              " restore the file from a copy, or delete that line")
        rows.append(row)
    return rows


def data_info(config: dict[str, Any]) -> dict[str, Any]:
    """The data info of a config.json (runs written before it was recorded kept class names at the top)."""
    info = config.get("data", {}).get("info")
    if info is not None:
        return info
    pre = config["preprocess"]
    return {"class_names": list(config.get("class_names", [])), "in_channels": pre["in_channels"],
            "image_size": pre["image_size"]}


@dataclass
class LoadedRun:
    """A run directory's model (eval mode, on ``device``), config, task and preprocessing."""

    run_dir: Path
    model: nn.Module
    config: dict[str, Any]
    task: Any  # cnnlab.tasks.Task
    preprocess: Normalize  # uint8 (N, C, H, W) -> the model's float input
    history: list[dict[str, Any]]
    device: torch.device
    #: the inference Precision after ``cnnlab.app.inference.fast_inference`` (else None: plain fp32)
    precision: Any = None

    @property
    def info(self) -> dict[str, Any]:
        return data_info(self.config)

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The training input size (H, W) of fixed-size runs; None where images kept their own size."""
        size = self.config["preprocess"].get("image_size")
        return None if size is None else (int(size[0]), int(size[1]))

    @property
    def input_size(self) -> tuple[int, ...]:
        """(H, W) of an input the model surely takes (the training input size); (T,) for audio."""
        size = self.config["preprocess"].get("input_size") or self.config["preprocess"]["image_size"]
        return tuple(int(s) for s in size)

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


#: what ``load_run`` reads from config.json: each section's keys and the type of their values (None: any)
CONFIG_KEYS: dict[str, dict[str, type | None]] = {
    "model": {"name": str, "kwargs": dict},
    "preprocess": {"image_size": None, "in_channels": int, "mean": list, "std": list},
}


def check_config(config: Any, path: Path) -> dict[str, Any]:
    """``config`` when it holds what ``load_run`` reads; else a CnnlabError naming what is wrong (a
    config.json edited by hand, or cut short, must not end in a KeyError)."""
    def damaged(problem: str) -> CnnlabError:
        return CnnlabError(f"{path} is damaged ({problem}); restore it from a copy or train a new run")

    if not isinstance(config, dict):
        raise damaged(f"it holds a JSON {type(config).__name__}, not an object")
    if not isinstance(config.get("task"), str):
        raise damaged("it names no task")
    for section, keys in CONFIG_KEYS.items():
        values = config.get(section)
        if not isinstance(values, dict):
            raise damaged(f"it has no {section!r} object")
        for key, kind in keys.items():
            if key not in values or (kind is not None and not isinstance(values[key], kind)):
                raise damaged(f"{section}.{key} is missing or not a{'n' if kind is int else ''} "
                              f"{(kind or object).__name__}")
    return config


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` from config.json and load model.safetensors into it: the plain
    fp32 model (``cnnlab.app.inference.fast_inference`` turns it into the fast one)."""
    from cnnlab.models import create_model
    from cnnlab.tasks import get_task

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        hint = "the folder does not exist" if not run_dir.exists() else f"it has no {CONFIG}"
        raise CnnlabError(f"{run_dir} is not a run directory ({hint}); train one with `cnnlab train ... --out {run_dir}`")
    if not (run_dir / MODEL).exists():
        raise CnnlabError(f"{run_dir} has no {MODEL} yet: training has not finished an epoch; "
                          "continue it with `cnnlab train ... --resume`")
    config = check_config(read_json(run_dir / CONFIG), run_dir / CONFIG)
    task = get_task(config["task"], **config.get("task_options", {}))
    task.bind_data(data_info(config))
    try:
        model = create_model(config["model"]["name"], **config["model"]["kwargs"])
    except TypeError as exc:  # a keyword the builder does not take: edited, or written by another version
        raise CnnlabError(f"{run_dir / CONFIG} describes a model that cannot be built ({exc}); the run directory "
                          "is damaged or from another cnnlab version: restore it or train a new run") from None
    load_model_weights(run_dir / MODEL, model)
    device = resolve_device(str(device))
    model = model.to(device).eval()
    pre = config["preprocess"]
    preprocess = Normalize(pre["mean"], pre["std"], pre.get("scale", 255.0))  # runs before 'scale' held images
    return LoadedRun(run_dir, model, config, task, preprocess, read_metrics(run_dir), device)

