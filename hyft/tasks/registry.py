"""Task registry (lm-eval-harness style): look a benchmark up by name, with did-you-mean on typos.

Task families register themselves when their module is imported; :func:`get_task` imports them all
on first use, so ``import hyft.tasks.registry`` stays cheap and free of import cycles.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence

from hyft.errors import UserError
from hyft.tasks.base import Task
from hyft.tasks.loading import DataSource

_FAMILY_MODULES = ("xnli", "flores", "glue", "gsm8k", "mtbench", "humaneval", "demo_nli", "demo_topic")
_TASKS: dict[str, Task] = {}
# A group names several tasks; the callable decides which (e.g. GLUE adds QQP only with a local file).
_GROUPS: dict[str, Callable[[DataSource], list[str]]] = {}
_loaded = False


class UnknownTaskError(UserError):
    """A task name that is not registered; the message suggests the closest name and lists all."""


def register_task(task: Task, replace: bool = False) -> Task:
    """Add ``task`` to the registry (a second task with the same name is a programming error, unless
    ``replace``: the config-defined ``custom`` task is rebuilt each time a run config is validated)."""
    if task.name in _TASKS and _TASKS[task.name] is not task and not replace:
        raise ValueError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task
    return task


def register_group(name: str, members: Callable[[DataSource], list[str]]) -> None:
    """Register a group name that expands to several task names."""
    _GROUPS[name] = members


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            importlib.import_module(f"hyft.tasks.{module}")
        _loaded = True


def available_tasks() -> list[str]:
    """Sorted names of every registered task and group."""
    _load_families()
    return sorted({*_TASKS, *_GROUPS})


def is_group(name: str) -> bool:
    """Whether ``name`` is a group of tasks (e.g. ``glue``) rather than one task."""
    _load_families()
    return name in _GROUPS


def unknown_task_message(name: str) -> str:
    """``unknown task 'x'; did you mean 'y'? available: ...`` (shared with config validation)."""
    names = available_tasks()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown task {name!r}{hint} available tasks: {', '.join(names)}"


def get_task(name: str) -> Task:
    """The registered task called ``name`` (groups are not tasks: use :func:`expand_task_names`)."""
    _load_families()
    if name in _TASKS:
        return _TASKS[name]
    if name in _GROUPS:
        raise UnknownTaskError(f"{name!r} is a group of tasks; expand it with expand_task_names([{name!r}])")
    if name == "custom":
        raise UnknownTaskError(
            "task 'custom' is defined by a run config's data.custom section (test file, "
            "text_fields, label_field, label_names); none has been read in this process"
        )
    raise UnknownTaskError(unknown_task_message(name))


def expand_task_names(names: Sequence[str], data: DataSource | None = None) -> list[str]:
    """Replace group names by their members, keep order, drop repeats; unknown names raise."""
    _load_families()
    data = data or DataSource.default()
    expanded: list[str] = []
    for name in names:
        members = _GROUPS[name](data) if name in _GROUPS else [get_task(name).name]
        expanded.extend(member for member in members if member not in expanded)
    return expanded
