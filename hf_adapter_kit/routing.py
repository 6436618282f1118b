"""Task names and per-example ``task_ids`` for the multi-task methods (Hyperformer++, multi-task parallel).

A multi-task adapter is configured with ``tasks=["sentiment", "ner"]``; every forward pass then takes ``task_ids``:
one entry per example, either a position in ``tasks`` or a task name (a single int or name applies to the whole
batch). An adapter with exactly one task needs no ``task_ids``.

How ``task_ids`` reach the layers:

- PEFT: ``PeftModel.forward(..., task_ids=...)`` and ``generate(..., task_ids=...)``
  (:mod:`hf_adapter_kit.patches.peft_methods` wraps both) set :func:`task_context` for the call.
- ``adapters``: the library's own ``ForwardContext`` takes ``task_ids=`` from the model's forward call.
- Anything else (a model with layers put in by ``peft.inject_adapter_in_model``, a pipeline, a custom loop): wrap the
  call in ``with hf_adapter_kit.task_context(task_ids): ...``. Both backends read it when the call itself gave none.

``generate`` with beams or several sequences per prompt runs ``k * batch`` rows; ids given per prompt are then
repeated ``k`` times each, as ``generate`` repeats the prompts. :func:`resolve_task_ids` validates once per forward
pass and the layers reuse the result (:class:`Routing`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .errors import invalid


def check_tasks(value: Any, argument: str = "tasks") -> tuple[str, ...]:
    """A non-empty list of distinct, non-empty task names, as a tuple."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise invalid(argument, value, "a non-empty list of task names, e.g. ['sentiment', 'ner'].")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise invalid(argument, value, f"every task name must be a non-empty string; got {name!r}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise invalid(argument, value, f"task names must be unique; repeated: {repeated}.")
    return names


def resolve_task_ids(
    task_ids: Any, tasks: Sequence[str], batch_size: int, device: torch.device | None = None, expand: bool = False
) -> torch.Tensor:
    """``task_ids`` as a ``LongTensor`` of shape ``(batch_size,)`` with values in ``range(len(tasks))``.

    Accepts ``None`` (only for a single-task adapter), an int or task name for the whole batch, or one int / name per
    example (list, tuple or 1-D tensor). With ``expand`` (``generate``), ids for ``batch_size / k`` prompts are
    repeated ``k`` times each. Anything else is an :class:`AdapterKitError` naming ``task_ids``.
    """
    allowed = f"an int in [0, {len(tasks) - 1}] or a task name from {list(tasks)}"
    if task_ids is None:
        if len(tasks) == 1:
            return torch.zeros(batch_size, dtype=torch.long, device=device)
        raise invalid("task_ids", None, f"this adapter serves {len(tasks)} tasks; pass, per example, {allowed}.")
    if isinstance(task_ids, int | str) and not isinstance(task_ids, bool):
        task_ids = [task_ids] * batch_size
    if isinstance(task_ids, torch.Tensor):
        if task_ids.dim() != 1 or task_ids.dtype.is_floating_point or task_ids.dtype == torch.bool:
            raise invalid("task_ids", task_ids, f"a 1-D integer tensor with one entry per example ({allowed}).")
        ids = task_ids.to(device=device, dtype=torch.long)
    elif isinstance(task_ids, Sequence):
        ids = torch.tensor([_task_index(t, tasks, allowed) for t in task_ids], dtype=torch.long, device=device)
    else:
        raise invalid("task_ids", task_ids, f"one {allowed} per example, as a list or a 1-D tensor.")
    if expand and ids.numel() and batch_size != ids.numel() and batch_size % ids.numel() == 0:
        ids = ids.repeat_interleave(batch_size // ids.numel())
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


class Routing:
    """Validated task ids of one forward pass, and the tasks present, so that layers never loop over tasks.

    ``unique`` holds the tasks present (sorted) and ``inverse`` each example's position in it: a layer computes or
    gathers per-task weights for ``unique`` once and hands each example its own with ``index_select(0, inverse)``.
    """

    def __init__(self, ids: torch.Tensor):
        self.ids = ids
        self.unique, self.inverse = torch.unique(ids, sorted=True, return_inverse=True)
        self.present = self.unique.tolist()

    @property
    def single(self) -> int | None:
        """The one task of the batch, or ``None`` for a batch that mixes tasks (or is empty)."""
        return self.present[0] if len(self.present) == 1 else None


_TASK_IDS: contextvars.ContextVar = contextvars.ContextVar("hf_adapter_kit_task_ids", default=None)


@contextlib.contextmanager
def task_context(task_ids: Any, expand: bool = False) -> Iterator[None]:
    """Make ``task_ids`` visible to the kit's layers (both backends) for the calls inside the block.

    >>> with task_context(["sentiment", "ner"]):   # doctest: +SKIP
    ...     out = model(**batch)
    """
    token = _TASK_IDS.set({"raw": task_ids, "expand": expand})
    try:
        yield
    finally:
        _TASK_IDS.reset(token)


def keep_task_context(function):
    """``function`` bound to the task context of now: wherever and whenever it runs (gradient checkpointing reruns
    a block's forward during the backward pass, after the call that set the context has returned), its layers see
    the same ``task_ids`` and reuse the same validated routing."""
    state = _TASK_IDS.get()

    @functools.wraps(function)
    def in_context(*args, **kwargs):
        token = _TASK_IDS.set(state)
        try:
            return function(*args, **kwargs)
        finally:
            _TASK_IDS.reset(token)

    return in_context


def routing(tasks: Sequence[str], batch_size: int, device: torch.device, holder: Any = None) -> Routing:
    """The routing of the running forward pass, validated once and reused by every layer.

    ``holder`` is an ``adapters`` ``ForwardContext``: its ``task_ids`` (from the model's forward call) win over the
    kit's :func:`task_context`. Without one, the kit's context is read.
    """
    if holder is not None and getattr(holder, "task_ids", None) is not None:
        state = holder.__dict__.setdefault("_kit_task_state", {"raw": holder.task_ids, "expand": False})
    else:  # the kit's context caches on itself: one validation per call
        state = _TASK_IDS.get()
        if state is None and len(tasks) == 1:
            return _one_task(batch_size, device)
        state = state or {"raw": None, "expand": False}
    key = (tuple(tasks), batch_size, device)
    if state.get("key") != key:
        ids = resolve_task_ids(state["raw"], tasks, batch_size, device, expand=state.get("expand", False))
        state["routing"], state["key"] = Routing(ids), key
    return state["routing"]


_ONE_TASK: dict = {}


def _one_task(batch_size: int, device: torch.device) -> Routing:
    """The routing of a single-task adapter called outside any task context (every example is task 0), built once
    per batch size and device: without it, each layer of each decoding step would build and sort its own."""
    key = (batch_size, device, torch.is_inference_mode_enabled())  # inference tensors never reach autograd
    found = _ONE_TASK.get(key)
    if found is None:
        if len(_ONE_TASK) >= 64:
            _ONE_TASK.clear()
        found = _ONE_TASK[key] = Routing(torch.zeros(batch_size, dtype=torch.long, device=device))
    return found


__all__ = [
    "Routing",
    "check_tasks",
    "keep_task_context",
    "resolve_task_ids",
    "routing",
    "task_context",
]
