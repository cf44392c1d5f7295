"""Task specs: what a model's head outputs, its loss, its metrics and how outputs become predictions.

The trainer has no task-specific branches: it asks the Task. ``get_task(name, **options)`` knows all
eight task names of the design; the ones not built yet say so plainly instead of failing somewhere
deeper. Adding a task is one module with a Task subclass and one line in ``_TASKS``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from cnnlab.errors import CnnlabError, unknown
from cnnlab.tasks.base import Batch, Meter, Task, better, flags

TASK_NAMES = ("classify", "segment", "superres", "denoise", "inpaint", "compress", "localize", "audio")

#: task name -> "module:class" of the tasks built so far (imported on first use)
_TASKS = {
    "classify": "cnnlab.tasks.classify:ClassifyTask",
    "segment": "cnnlab.tasks.segment:SegmentTask",
    "superres": "cnnlab.tasks.superres:SuperResTask",
    "denoise": "cnnlab.tasks.denoise:DenoiseTask",
    "inpaint": "cnnlab.tasks.inpaint:InpaintTask",
    "compress": "cnnlab.tasks.compress:CompressTask",
    "localize": "cnnlab.tasks.localize:LocalizeTask",
    "audio": "cnnlab.tasks.audio:AudioTask",
}


def task_class(name: str) -> type[Task]:
    """The Task subclass called ``name``."""
    if name not in TASK_NAMES:
        raise unknown("task", name, TASK_NAMES)
    if name not in _TASKS:
        raise CnnlabError(f"task {name!r} is not available yet in this version; available: "
                          f"{', '.join(available_tasks())}")
    module, _, cls = _TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **options: Any) -> Task:
    """The Task called ``name`` (for example ``"classify"``), configured with its own ``options``;
    an option the task does not take is an error that lists the ones it does."""
    cls = task_class(name)
    accepted = task_options(name)
    extra = sorted(set(options) - set(accepted))
    if extra:
        raise CnnlabError(f"task {name!r} has no option {flags(extra)}; its options: {flags(accepted) or 'none'}")
    return cls(**options)


def task_options(name: str) -> dict[str, Any]:
    """Option name -> default of task ``name`` (its constructor's keywords)."""
    params = inspect.signature(task_class(name)).parameters
    return {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}


def available_tasks() -> list[str]:
    """The task names this version can train."""
    return [name for name in TASK_NAMES if name in _TASKS]


__all__ = ["TASK_NAMES", "Batch", "Meter", "Task", "available_tasks", "better", "get_task", "task_class",
           "task_options"]
