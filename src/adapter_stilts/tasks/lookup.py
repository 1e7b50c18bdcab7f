"""Tasks by name: the catalog, loaded, and looked up. An unknown name lists the known ones.

This module sits above the catalog (tasks/catalog/), which sits above the registry
(tasks/registry.py): import `get_task` / `all_tasks` from here, `Task` from the registry."""
from __future__ import annotations

import difflib

from . import catalog  # noqa: F401  (importing it registers every task)
from .registry import TASKS, Task


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def get_task(name: str) -> Task:
    if name not in TASKS:
        near = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise UnknownTaskError(f"unknown task '{name}'.{hint} Known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def all_tasks() -> list[Task]:
    return [TASKS[k] for k in sorted(TASKS)]
