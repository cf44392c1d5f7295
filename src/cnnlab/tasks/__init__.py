"""Task specs: what a model's head outputs, its loss, its metrics and how outputs become predictions.

The trainer has no task-specific branches: it asks the Task. ``get_task(name, **options)`` builds any
of the eight tasks; a misspelt name gets the closest one. Adding a task is one module with a Task
subclass and one line in ``_TASKS``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from cnnlab.errors import CnnlabError, unknown
from cnnlab.tasks.base import Batch, Meter, Task, better, flags

#: task name -> "module:class" (imported on first use)
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
TASK_NAMES = tuple(_TASKS)


def task_class(name: str) -> type[Task]:
    """The Task subclass called ``name``."""
    if name not in TASK_NAMES:
        raise unknown("task", name, TASK_NAMES)
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


__all__ = ["TASK_NAMES", "Batch", "Meter", "Task", "better", "get_task", "task_class",
           "task_options"]
