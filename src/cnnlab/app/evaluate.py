"""Evaluate a run directory on a data spec: the task's metrics, per-class tables and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError


def evaluate_run(run_dir: str | Path, spec: str, split: str = "auto", batch_size: int | None = None,
                 device: str = "cpu", limit: int | None = None, precision: str = "run",
                 tta: str = "none") -> tuple[dict[str, Any], Any]:
    """Evaluate ``run_dir`` on ``spec``; returns (metrics as a JSON-ready dict, the filled meter).

    ``split='auto'`` evaluates the held-out validation split when ``spec`` is the data the run was
    trained on (the same split, from the same seed, options and limit) and every example of any other
    spec. ``precision`` 'run' evaluates in the run's training precision (channels_last; fp32 for
    tasks scored on 8-bit levels); ``batch_size`` None sizes batches to stay in cache; ``tta`` averages
    over the task's test-time augmentations.
    """
    from cnnlab.app.inference import load_fast
    from cnnlab.train.loop import check_tta, evaluate
    from cnnlab.train.precision import inference_batch

    if batch_size is not None and batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {batch_size}")
    run = load_fast(run_dir, device, precision)
    check_tta(tta, run.task)
    train_cfg = run.config["train"]
    same_data = same_spec(str(spec), run.config["data"])
    if limit is None and same_data:
        limit = train_cfg.get("limit")  # the run's own subset, so 'val' is the split it held out
    bundle = load_like_run(run, spec, limit)
    check_same_kind(bundle.info, run.info, spec)
    if split == "auto":
        split = "val" if same_data else "all"
    if same_data and split in ("all", "train"):
        import warnings

        from cnnlab.data.images import DataWarning

        warnings.warn(f"--split {split} on the run's own data scores images it trained on; --split val scores "
                      "only the held-out ones", DataWarning, stacklevel=2)
    parts = [p for p in {"val": [bundle.val], "train": [bundle.train], "all": [bundle.train, bundle.val]}[split]
             if len(p)]
    if not parts:
        raise CnnlabError(f"the {split!r} split of --data {spec} is empty; pass --split all")
    data = concat(parts)
    batch = inference_batch(run.input_size, batch_size)
    meter = evaluate(run.model, run.task, data, run.preprocess, run.precision, batch, run.info, tta)
    result: dict[str, Any] = {"run": str(run_dir), "data": str(spec), "split": split, "examples": len(data),
                              "precision": run.precision.name, "tta": tta}
    result.update(meter.compute())
    per_class = getattr(meter, "per_class", None)
    if per_class is not None:
        stats = per_class()
        result["per_class"] = {name: {k: stats[k][i] for k in stats} for i, name in enumerate(run.class_names)}
    if getattr(meter, "confusion", None) is not None:
        result["confusion"] = meter.confusion.tolist()
    return result, meter


def load_like_run(run: Any, spec: str, limit: int | None) -> Any:
    """``spec`` loaded as the run loaded its data (its task's layout, split rule and seed, image size
    and data options), so that on the run's own data 'val' is the split it held out."""
    from cnnlab.data import load_data
    from cnnlab.data.specs import options_for_other_data

    kwargs = loaded_as(run)
    if not same_spec(spec, run.config["data"]):
        kwargs["options"] = options_for_other_data(kwargs["options"])
    return load_data(spec, run.config["task"], limit=limit, **kwargs)


def loaded_as(run: Any) -> dict[str, Any]:
    """The ``load_data`` keywords the run loaded its data with, ``limit`` aside: its split rule and seed,
    image size and data options (shared by evaluation and the report's preview)."""
    cfg = run.config["train"]
    options = {**run.task.data_options_like(run.info), **(run.config["data"].get("options") or {})}
    return {"val_split": cfg["val_split"], "seed": cfg["seed"], "image_size": run.image_size, "options": options}


def same_spec(spec: str, data: dict[str, Any]) -> bool:
    """True when ``spec`` names the data a run was trained on: the same text, or the same folder or
    file however it is spelled (trailing slash, relative or absolute)."""
    if spec == data["spec"]:
        return True
    from cnnlab.train.build import resolved_path

    try:
        mine = resolved_path(spec)
    except CnnlabError:
        return False
    saved = data.get("path") or (str(Path(data["spec"]).resolve()) if Path(data["spec"]).exists() else None)
    return mine is not None and saved is not None and Path(mine) == Path(saved)


def check_same_kind(info: dict[str, Any], run_info: dict[str, Any], spec: str) -> None:
    """The data must have the run's classes and channel count."""
    if list(info["class_names"]) != list(run_info["class_names"]):
        raise CnnlabError(f"--data {spec} has classes {info['class_names']}, the run was trained on "
                          f"{run_info['class_names']}; evaluate on data with the same classes")
    if info["in_channels"] != run_info["in_channels"]:
        raise CnnlabError(f"--data {spec} has {info['in_channels']} channel(s), the run expects "
                          f"{run_info['in_channels']}")


def concat(parts: list[Any]) -> Any:
    """Splits joined item by item (stacked fields stay stacked when their shapes agree)."""
    from cnnlab.data.bundle import Split, stack_or_list

    if len(parts) == 1:
        return parts[0]
    fields = {}
    for name in parts[0].fields:
        values = [p[name] for p in parts]
        if all(isinstance(v, torch.Tensor) for v in values) and len({v.shape[1:] for v in values}) == 1:
            fields[name] = torch.cat(values)
        else:
            fields[name] = stack_or_list([t for v in values for t in v])
    return Split(fields, parts[0].kinds)
