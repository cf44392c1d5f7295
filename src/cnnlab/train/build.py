"""What a run is built from: the model with the task's head, its data-dependent init, and config.json."""

from __future__ import annotations

import platform
from typing import Any

import torch
from torch import nn

from cnnlab.data.bundle import DataBundle
from cnnlab.errors import CnnlabError
from cnnlab.rundir import Normalize
from cnnlab.tasks import Task
from cnnlab.train.config import TrainConfig
from cnnlab.train.distributed import Dist
from cnnlab.train.loop import seeded_generator

INIT_SAMPLE = 5000  # training images passed to a model's init_from_data (whitening statistics)


def check_input_fits(name: str, kwargs: dict, input_size: tuple[int, ...], task: Task | None = None) -> None:
    """Run the model once on the meta device (no memory, no arithmetic) at the training input size, so
    images too small for it fail here with the layer named, not in the first step after config.json
    was written (which left a run directory that could only be resumed into the same error)."""
    from cnnlab.models import create_model
    from cnnlab.models._summary import summarize

    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # the real model's RNG stream is untouched
        probe = create_model(name, **kwargs)
    found = summarize(probe, input_size)
    size = "x".join(map(str, input_size))
    if found.error is not None:
        raise CnnlabError(f"model {name!r} cannot train on {size} images: {found.error}")  # error says the fix
    if task is not None and found.output_shape is not None:
        problem = task.check_output(tuple(input_size), found.output_shape, kwargs)
        if problem:
            raise CnnlabError(f"model {name!r} outputs {tuple(found.output_shape)} per {size} input, but task "
                              f"{task.name!r} needs {problem}; pick a {task.name} model (`cnnlab models list`), "
                              f"e.g. --model {task.default_model}")


def build_model(cfg: TrainConfig, task: Task, info: dict[str, Any]) -> tuple[nn.Module, dict]:
    """The model named in ``cfg`` with the head the task needs for data ``info``; returns it and its
    full kwargs."""
    from cnnlab.models import create_model

    kwargs = dict(cfg.model_kwargs, **task.head_kwargs(info, cfg.model_kwargs), in_channels=task.input_channels(info))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run with this seed
    try:
        model = create_model(cfg.model, **kwargs)
    except TypeError as exc:  # a --model-arg the builder does not take
        raise CnnlabError(f"model {cfg.model!r} rejected its arguments {cfg.model_kwargs}: {exc}") from exc
    return model, kwargs


def init_from_data(model: nn.Module, x: torch.Tensor | list[torch.Tensor], preprocess: Normalize, seed: int) -> None:
    """Call the model's ``init_from_data`` (if it has one) with up to INIT_SAMPLE preprocessed images."""
    init = getattr(model, "init_from_data", None)
    if init is None or not isinstance(x, torch.Tensor):
        return
    take = torch.randperm(len(x), generator=seeded_generator(seed, -1))[:INIT_SAMPLE]
    init(preprocess(x[take]))


def make_preprocess(task: Task, bundle: DataBundle, saved: dict[str, Any] | None) -> Normalize:
    """The run's input normalisation: the saved one when resuming, else the training images' mean and
    std (identity for tasks whose models see [0, 1] pixels)."""
    if saved is not None:
        pre = saved["preprocess"]
        return Normalize(pre["mean"], pre["std"], pre.get("scale", 255.0))
    pre = task.input_normalizer(bundle.train.x)
    extra = task.input_channels(bundle.info) - len(pre.mean)  # channels the task adds pass unchanged
    return Normalize(pre.mean + [0.0] * extra, pre.std + [1.0] * extra, pre.scale) if extra > 0 else pre


def run_config(cfg: TrainConfig, task: Task, bundle: DataBundle, model_kwargs: dict, preprocess: Normalize,
               precision: str, device: torch.device, dist: Dist) -> dict[str, Any]:
    """config.json: everything load_run needs to rebuild model and preprocessing, plus provenance."""
    import cnnlab

    info = bundle.info
    return {
        "task": cfg.task,
        "task_options": task.options(),
        "model": {"name": cfg.model, "kwargs": model_kwargs},
        "preprocess": {"image_size": info["image_size"], "input_size": list(task.input_size(info)),
                       "in_channels": bundle.in_channels, "mean": preprocess.mean, "std": preprocess.std,
                       "scale": preprocess.scale},
        "data": {"spec": bundle.spec, "path": resolved_path(bundle.spec), "info": info, "options": dict(cfg.data_options),
                 "train_size": len(bundle.train), "val_size": len(bundle.val), "meta": _jsonable(bundle.meta)},
        "train": cfg.to_dict(),
        "resolved": {"device": str(device), "precision": precision, "world_size": dist.world_size},
        "versions": {"cnnlab": cnnlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }


def resolved_path(spec: str) -> str | None:
    """The absolute path of a folder or file spec (None for builtin and named data), so that a run
    can recognise its own data however the path is spelled later."""
    from pathlib import Path

    from cnnlab.data import parse_spec

    kind = parse_spec(spec).kind
    return str(Path(spec).expanduser().resolve()) if kind in ("folder", "npz") else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
