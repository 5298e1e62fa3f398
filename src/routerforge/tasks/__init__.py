"""The built-in task suite: generated questions with exact answers and graded difficulty."""

from __future__ import annotations

from routerforge.tasks.generators import GENERATORS, Task
from routerforge.tasks.suite import available_kinds, generate_tasks

__all__ = ["GENERATORS", "Task", "available_kinds", "generate_tasks"]
