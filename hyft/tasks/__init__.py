"""Benchmark tasks: registry, loaders, k-shot sampler, prompt templates (see :mod:`hyft.tasks.registry`)."""

from hyft.tasks.registry import available_tasks, expand_task_names, get_task, register_task

__all__ = ["available_tasks", "expand_task_names", "get_task", "register_task"]
