"""Data: the embedded tasks, local files and Hub datasets, with fixed seeded splits."""

from .taskdata import TaskData
from .tasks import list_tasks, load_task


__all__ = ["TaskData", "list_tasks", "load_task"]
