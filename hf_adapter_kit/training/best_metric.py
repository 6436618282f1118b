"""``metric_for_best_model`` for a run's task kind, read from ``kinds.py`` (each kind's best metric, its direction and
what its validation split reports). A strategy whose model has one kind picks it here; multi-task classification
ranks checkpoints by its ``score``, the mean of each task kind's best metric (``strategies/multitask.py``)."""

from __future__ import annotations

from ..errors import invalid
from ..kinds import Kind, get_kind
from .args import KitTrainingArguments


def pick_best_metric(training_args: KitTrainingArguments, kind: str) -> None:
    """The kind's own metric (and direction) when the user gave none, else one the kind reports, checked."""
    task_kind = get_kind(kind)
    if getattr(training_args, "kit_default_metric", False):
        training_args.metric_for_best_model = task_kind.best_metric
        training_args.greater_is_better = task_kind.greater_is_better
        return
    metric = training_args.metric_for_best_model
    allowed = task_kind.best_metrics()
    if metric is not None and metric.removeprefix("eval_") not in allowed:
        raise invalid("metric_for_best_model", metric, _what_is_allowed(task_kind, allowed))


def _what_is_allowed(task_kind: Kind, allowed: list[str]) -> str:
    if allowed == ["loss"]:  # a generative kind: generation is measured once, on the test split, at the end
        return f"'loss' (or unset) with task_type={task_kind.name!r}: validation loss picks the best checkpoint."
    return f"this task is {task_kind.description}, which reports {allowed} (or unset)."


__all__ = ["pick_best_metric"]
