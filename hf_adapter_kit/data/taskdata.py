"""``TaskData``: a task's train/validation/test splits in memory, its classes and its kind; and how it is built.

Text classification (``kind="sequence"``) splits have the columns ``text`` (str), optionally ``text_pair`` (str), and
``label`` (int, an index into ``label_names``). Token classification (``kind="token"``) splits have ``tokens`` (the
words of a sentence) and ``tags`` (one int per word, indexes into ``label_names``).
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from .files import Table


SPLITS = ("train", "validation", "test")
KINDS = ("sequence", "token")  # one label per input / one label per word, as MultiTaskModel's TaskHead kinds


@dataclass
class TaskData:
    """A classification task: splits ``train``/``validation``/``test`` and the label names (index = label id)."""

    name: str
    splits: datasets.DatasetDict
    label_names: list[str]
    description: str = ""
    source: str = ""
    kind: str = "sequence"

    @property
    def num_labels(self) -> int:
        """How many classes."""
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        """Label id -> label name, as model configs want it."""
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        """Label name -> label id."""
        return {name: i for i, name in enumerate(self.label_names)}


def build_task(
    name: str,
    tables: dict[str, Table],
    label_names: list[str],
    caps: dict[str, int | None],
    description: str,
    source: str,
    kind: str = "sequence",
) -> TaskData:
    """Cut the splits to the caps (``max_train_samples``, ``max_eval_samples``) and build the in-memory DatasetDict."""
    if kind == "token":
        features = {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=label_names)),
        }
    else:
        features = {"text": datasets.Value("string")}
        if "text_pair" in tables["train"]:
            features["text_pair"] = datasets.Value("string")
        features["label"] = datasets.ClassLabel(names=label_names)
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {column: values[: caps[split]] for column, values in tables[split].items()},
                features=datasets.Features(features),
            )
            for split in SPLITS
        }
    )
    return TaskData(name, splits, label_names, description, source, kind)
