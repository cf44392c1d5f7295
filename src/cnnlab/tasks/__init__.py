"""Task specs: what a model's head outputs, its loss, its metrics and how outputs become predictions.

The trainer has no task-specific branches: it asks the Task. ``get_task(name)`` knows all eight task
names of the design; the ones not built yet say so plainly instead of failing somewhere deeper.
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import CnnlabError, unknown
from cnnlab.tasks.base import Meter, Task

TASK_NAMES = ("classify", "segment", "superres", "denoise", "inpaint", "compress", "localize", "audio")


def get_task(name: str, **options: Any) -> Task:
    """The Task called ``name`` (for example ``"classify"``), configured with task ``options``."""
    if name not in TASK_NAMES:
        raise unknown("task", name, TASK_NAMES)
    if name == "classify":
        from cnnlab.tasks.classify import ClassifyTask

        return ClassifyTask(**options)
    raise CnnlabError(f"task {name!r} is not available yet in this version; available: classify")


def available_tasks() -> list[str]:
    """The task names this version can train."""
    return ["classify"]


__all__ = ["TASK_NAMES", "Meter", "Task", "available_tasks", "get_task"]
