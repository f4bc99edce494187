"""Task families the engine knows, by the `task` of a trial spec. A new family adds one
module here and one entry to `_FAMILIES` (and its config model to core/specs.py)."""

from __future__ import annotations

import importlib

from medloop.core.errors import SpecError
from medloop.engine.tasks.base import FollowUpJobs, ScoringContext, TaskFamily

__all__ = ["FollowUpJobs", "ScoringContext", "TaskFamily", "family", "known_tasks"]

# task -> "module:attribute" of a TaskFamily instance, imported on first use
_FAMILIES: dict[str, str] = {
    "segmentation": "medloop.engine.tasks.segmentation:FAMILY",
    "vqa": "medloop.engine.tasks.vqa:FAMILY",
    "audio": "medloop.engine.tasks.audio:FAMILY",
    "pretrain": "medloop.engine.tasks.pretrain:FAMILY",
    "promptable": "medloop.engine.tasks.promptable:FAMILY",
    "classification": "medloop.engine.tasks.classification:FAMILY",
}


def known_tasks() -> list[str]:
    return sorted(_FAMILIES)


def family(task: str) -> TaskFamily:
    try:
        target = _FAMILIES[task]
    except KeyError:
        raise SpecError(f"task {task!r} has no engine family; known: {known_tasks()}") from None
    module, _, attr = target.partition(":")
    found: TaskFamily = getattr(importlib.import_module(module), attr)
    return found
