"""Training strategies: what each task shape does at the steps of the one training pipeline (``run.py``) where task
shapes differ (:class:`~.base.Strategy` lists those steps).

A run's strategy is the registered one that serves its ``task_type`` (``ModelArguments``; None for classification)
with or without ``tasks`` (several tasks, one multi-task adapter):

- :class:`Classification` (``classification.py``): ``task_type`` None, one ``task``, text or token classification;
- :class:`MultiTaskClassification` (``multitask.py``): ``task_type`` None with ``tasks``, one head per task;
- :class:`InstructionTuning` (``instructions.py``): ``task_type='causal-lm'``, one ``task`` or several ``tasks``;
- :class:`TextToText` (``text2text.py``): ``task_type='seq2seq-lm'`` (T5, BART), one ``task`` or several ``tasks``.

A new task shape is a new Strategy subclass with its own ``task_type``, added to :data:`STRATEGIES`; the pipeline
does not change. Its kind (model class, PEFT ``task_type``,
best metric) is a row of ``kinds.py``, and ``ModelArguments`` must accept its ``task_type``.
"""

from __future__ import annotations

from ...errors import invalid
from .base import RunArguments, Strategy
from .classification import Classification
from .instructions import InstructionTuning
from .multitask import MultiTaskClassification
from .text2text import TextToText


STRATEGIES: tuple[type[Strategy], ...] = (Classification, MultiTaskClassification, InstructionTuning, TextToText)


def choose_strategy(task_type: str | None, tasks: list[str] | None) -> type[Strategy]:
    """The registered strategy for ``task_type`` with ``tasks`` given or not."""
    several = tasks is not None
    for strategy in STRATEGIES:
        if strategy.serves(task_type, several):
            return strategy
    served = sorted({s.task_type for s in STRATEGIES if s.several_tasks in (None, several)}, key=str)
    raise invalid("task_type", task_type, f"one of {served}{' with `tasks`' if several else ''}.")


__all__ = [
    "STRATEGIES",
    "Classification",
    "InstructionTuning",
    "MultiTaskClassification",
    "RunArguments",
    "Strategy",
    "TextToText",
    "choose_strategy",
]
