"""Multi-task adapters trained by TRL's ``SFTTrainer``: each example's ``task_ids`` reach the model.

TRL 1.16's ``SFTTrainer`` trains the kit's PEFT configs as it trains LoRA, but a multi-task adapter (Hyperformer++
or parallel with several ``tasks``) routes every example by its ``task_ids``, and nothing in TRL carries them: its
``_set_signature_columns_if_needed`` keeps only ``input_ids``, ``labels`` and ``seq_lengths`` of the dataset, and its
``DataCollatorForLanguageModeling`` builds a batch of ids, labels and attention mask alone. The first training step
then stops on ``task_ids=None``. :class:`TaskRoutedSFTTrainer` is ``SFTTrainer`` with the dataset's ``task_ids``
column kept and collated (:class:`TaskRouting`, which mixes into another trainer class the same way), and the model's
forward gets them, which the kit's PEFT wrapper (``patches/peft_methods.py``) or ``adapters``' forward context hands
to the adapter's layers. With gradient checkpointing (``SFTConfig``'s default), a checkpointed block recomputes in
the task context of its first run, as in the kit's own training (``modeling/checkpointing.py``). Packing and
padding-free batches, which join several examples into one sequence, are refused before anything is prepared.

This module imports TRL, which the kit itself does not need (the ``test`` extra pins it): nothing in the kit imports
it, so ``import hf_adapter_kit`` works without TRL. Written against trl 1.16.0.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

import torch

from ..errors import invalid
from .trainer import GradientCheckpointing


try:
    from trl import SFTTrainer
except ImportError as err:  # pragma: no cover - trl is in the test extra
    raise ImportError(
        "hf_adapter_kit.training.trl trains with TRL's SFTTrainer: install TRL first (pip install trl; the kit's "
        "tests pin trl==1.16.0)."
    ) from err


WRITTEN_AGAINST = "1.16"  # tests/test_trl.py fails on another TRL release
TASK_COLUMN = "task_ids"  # the dataset column, named as the model's argument


class TaskIdsCollator:
    """Wraps a data collator: the features' ``task_ids`` are taken out before it runs and put into its batch, as a
    ``LongTensor`` of indices or, for task names, a list (the adapter resolves names against its tasks)."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or TASK_COLUMN not in features[0]:
            return self.collator(features)
        task_ids = [feature.get(TASK_COLUMN) for feature in features]
        batch = self.collator([{k: v for k, v in f.items() if k != TASK_COLUMN} for f in features])
        indices = all(isinstance(t, Integral) and not isinstance(t, bool) for t in task_ids)
        batch[TASK_COLUMN] = torch.tensor(task_ids, dtype=torch.long) if indices else task_ids
        return batch

    def __getattr__(self, name: str) -> Any:  # the wrapped collator's settings (TRL reads and sets some)
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


class TaskRouting:
    """Mix into a Trainer class, before it (``class MyTrainer(TaskRouting, SFTTrainer)``): the datasets' ``task_ids``
    column is kept, collated and handed to the model's forward; checked before the trainer prepares anything."""

    def __init__(self, model: Any, args: Any = None, *more: Any, **kwargs: Any):
        given = {  # by keyword, or in the Trainer's order: model, args, data_collator, train_dataset, eval_dataset
            name: kwargs.get(name, more[index] if len(more) > index else None)
            for index, name in ((1, "train_dataset"), (2, "eval_dataset"))
        }
        _check(args, given)
        super().__init__(model, args, *more, **kwargs)
        self.data_collator = TaskIdsCollator(self.data_collator)
        if self.args.gradient_checkpointing:  # recomputed blocks keep the task context of their first run
            self.add_callback(GradientCheckpointing())

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if TASK_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TASK_COLUMN]


class TaskRoutedSFTTrainer(TaskRouting, SFTTrainer):
    """TRL's ``SFTTrainer`` for multi-task adapters: every example of the datasets carries its task in a
    ``task_ids`` column (a task name or an index of the adapter's ``tasks``), and batches may mix tasks."""


def _check(args: Any, given: dict[str, Any]) -> None:
    for setting in ("packing", "padding_free"):
        if getattr(args, setting, False):
            raise invalid(
                setting,
                getattr(args, setting),
                f"False with task_ids: {setting} joins several examples into one sequence, and each example is "
                "routed to its own task.",
            )
    for name, dataset in given.items():
        for split, data in dataset.items() if isinstance(dataset, dict) else [(None, dataset)]:
            columns = getattr(data, "column_names", None)
            if columns is not None and TASK_COLUMN not in columns:
                argument = name if split is None else f"{name}[{split!r}]"
                raise invalid(
                    argument,
                    f"a dataset with the columns {columns}",
                    f"a `{TASK_COLUMN}` column: each example's task, a name or an index of the adapter's tasks.",
                )


__all__ = ["TASK_COLUMN", "WRITTEN_AGAINST", "TaskIdsCollator", "TaskRoutedSFTTrainer", "TaskRouting"]
