"""What the runs over several tasks (``tasks=[...]``, classification or instruction tuning) share: the checks of
their arguments and the ``task_ids`` column that routes each example to its task."""

from __future__ import annotations

import datasets

from ...errors import invalid
from ...registry import MethodSpec, multi_task_methods
from ...routing import check_tasks
from ..args import DataArguments, MethodArguments


def check_multitask_arguments(spec: MethodSpec, data_args: DataArguments, method_args: MethodArguments) -> list[str]:
    """The task names of a multi-task run (``tasks``, classification or instruction tuning), once a multi-task method,
    embedded or Hub tasks, a temperature > 0 and the same tasks in ``method_options`` (if any) are checked."""
    if not spec.multi_task:
        raise invalid("method", method_args.method, f"a multi-task method for `tasks`: one of {multi_task_methods()}.")
    names = list(check_tasks(data_args.tasks))
    if any(getattr(data_args, f) for f in ("train_file", "validation_file", "test_file")):
        raise invalid("tasks", names, "embedded or Hub task names; local files name a single `task`.")
    if data_args.temperature <= 0:
        raise invalid("temperature", data_args.temperature, "a number > 0 (1: by task size; 10: nearly uniform).")
    given = method_args.options().get("tasks")
    if given is not None and list(given) != names:
        raise invalid("method_options.tasks", given, f"leave it out or give the same tasks as `tasks` {names}.")
    return names


def add_task_ids(encoded: list[datasets.DatasetDict]) -> None:
    """Give every example of the i-th task's splits the column ``task_ids`` = i, which the model routes by."""
    for index, splits in enumerate(encoded):
        for split in splits:
            splits[split] = splits[split].add_column("task_ids", [index] * splits[split].num_rows)


__all__ = ["add_task_ids", "check_multitask_arguments"]
