"""Data: the embedded tweet tasks, local files and Hub datasets, with fixed seeded splits."""

from .tasks import TaskData, list_tasks, load_task


__all__ = ["TaskData", "list_tasks", "load_task"]
