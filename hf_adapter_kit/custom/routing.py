"""Task names and per-example ``task_ids`` for the multi-task methods (Hyperformer++, multi-task parallel).

A multi-task adapter is configured with ``tasks=["sentiment", "ner"]``; every forward pass then takes ``task_ids``:
one entry per example, either a position in ``tasks`` or a task name (a single int or name applies to the whole
batch). An adapter with exactly one task needs no ``task_ids``.

Both backends hand ``task_ids`` to the adapter layers through a per-forward context: on ``adapters`` its own
``ForwardContext`` (the library pops ``task_ids`` from the model's keyword arguments), on PEFT the context below,
which ``hf_adapter_kit.patches.peft_methods`` sets around ``PeftModel.forward``. :func:`resolve_task_ids` validates
once per forward pass and the layers reuse the result.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..errors import invalid


def check_tasks(tasks: Any, argument: str = "tasks") -> tuple[str, ...]:
    """A non-empty list of distinct, non-empty task names, as a tuple."""
    if isinstance(tasks, str) or not isinstance(tasks, Sequence) or len(tasks) == 0:
        raise invalid(argument, tasks, "a non-empty list of task names, e.g. ['sentiment', 'ner'].")
    names = tuple(tasks)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise invalid(argument, tasks, f"every task name must be a non-empty string; got {name!r}.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise invalid(argument, tasks, f"task names must be unique; repeated: {duplicates}.")
    return names


def resolve_task_ids(task_ids: Any, tasks: Sequence[str], batch_size: int, device: torch.device | None = None):
    """``task_ids`` as a ``LongTensor`` of shape ``(batch_size,)`` with values in ``range(len(tasks))``.

    Accepts ``None`` (only for a single-task adapter), an int or task name for the whole batch, or one int / name per
    example (list, tuple or 1-D tensor). Anything else is an :class:`AdapterKitError` naming ``task_ids``.
    """
    allowed = f"an int in [0, {len(tasks) - 1}] or a task name from {list(tasks)}"
    if task_ids is None:
        if len(tasks) == 1:
            return torch.zeros(batch_size, dtype=torch.long, device=device)
        raise invalid("task_ids", None, f"this adapter serves {len(tasks)} tasks; pass one {allowed} per example.")
    if isinstance(task_ids, (int, str)) and not isinstance(task_ids, bool):
        task_ids = [task_ids] * batch_size
    if isinstance(task_ids, torch.Tensor):
        if task_ids.dim() != 1 or task_ids.dtype.is_floating_point or task_ids.dtype == torch.bool:
            raise invalid("task_ids", task_ids, f"a 1-D integer tensor with one entry per example ({allowed}).")
        ids = task_ids.to(device=device, dtype=torch.long)
    elif isinstance(task_ids, Sequence):
        ids = torch.tensor([_task_index(t, tasks, allowed) for t in task_ids], dtype=torch.long, device=device)
    else:
        raise invalid("task_ids", task_ids, f"one {allowed} per example, as a list or a 1-D tensor.")
    if ids.numel() != batch_size:
        raise invalid("task_ids", task_ids, f"one entry per example: the batch has {batch_size}, got {ids.numel()}.")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(tasks)):
        raise invalid("task_ids", task_ids, f"every entry must be {allowed}.")
    return ids


def _task_index(task: Any, tasks: Sequence[str], allowed: str) -> int:
    if isinstance(task, str):
        if task not in tasks:
            raise invalid("task_ids", task, f"unknown task name; expected {allowed}.")
        return tasks.index(task)
    if isinstance(task, int) and not isinstance(task, bool):
        return task  # range checked by the caller, on the whole tensor
    raise invalid("task_ids", task, f"every entry must be {allowed}.")


# -- the PEFT side's per-forward context ------------------------------------------------------------------------------
_TASK_IDS: contextvars.ContextVar = contextvars.ContextVar("hf_adapter_kit_task_ids", default=None)


@contextlib.contextmanager
def task_context(task_ids: Any) -> Iterator[None]:
    """Make ``task_ids`` visible to the kit's PEFT layers for the duration of one forward pass."""
    token = _TASK_IDS.set({"raw": task_ids})
    try:
        yield
    finally:
        _TASK_IDS.reset(token)


def current_task_ids(tasks: Sequence[str], batch_size: int, device: torch.device) -> Routing:
    """The validated ids of the running PEFT forward pass (validated once, then reused by every layer)."""
    state = _TASK_IDS.get()
    return _cached(state if state is not None else {"raw": None}, tasks, batch_size, device)


def cached_task_ids(holder: Any, tasks: Sequence[str], batch_size: int, device: torch.device) -> Routing:
    """Same as :func:`current_task_ids` for an ``adapters`` ``ForwardContext`` (``holder.task_ids``)."""
    state = getattr(holder, "_kit_task_state", None) if holder is not None else None
    if state is None:
        state = {"raw": getattr(holder, "task_ids", None)}
        if holder is not None:
            holder._kit_task_state = state
    return _cached(state, tasks, batch_size, device)


def _cached(state: dict, tasks: Sequence[str], batch_size: int, device: torch.device) -> Routing:
    key = (tuple(tasks), batch_size, device)
    if state.get("key") != key:
        ids = resolve_task_ids(state["raw"], tasks, batch_size, device)
        present = sorted(set(ids.tolist()))
        state["routing"] = Routing(ids, present)
        state["key"] = key
    return state["routing"]


class Routing:
    """Validated task ids of one forward pass plus the tasks present, so layers can run each task's rows at once."""

    def __init__(self, ids: torch.Tensor, present: list[int]):
        self.ids = ids
        self.present = present
        self.rows = {t: (ids == t).nonzero().squeeze(1) for t in present} if len(present) > 1 else {}

    @property
    def single(self) -> int | None:
        """The one task of the batch, or ``None`` for a batch that mixes tasks."""
        return self.present[0] if len(self.present) == 1 else None
