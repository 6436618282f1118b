"""Examples as (prompt, completion) pairs: the data of the generative task types, instruction tuning of a decoder LLM
(``instructions.py``: the prompt a list of chat messages) and text-to-text with an encoder-decoder
(``text2text.py``: the prompt a string). Both come from the same two sources, built here:

- classification data (an embedded text-classification task, a local file with ``text_column`` / ``label_column``,
  a Hub dataset), loaded and split exactly as for classification (``tasks.py``), each example rendered as a prompt
  whose completion is its label's name (:func:`from_classification`);
- files of pairs (jsonl, json, csv or parquet) in the shape's own column names, read, checked, split and capped as
  classification files are: missing validation / test splits carved from train, ``max_train_samples`` /
  ``max_eval_samples`` cutting them afterwards (:func:`from_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ..errors import AdapterKitError, invalid
from .files import Table, read_file
from .taskdata import SPLITS


Renderer = Callable[[str, Sequence[str], str, "str | None"], Any]  # (task, labels, text, pair) -> prompt
Examples = Callable[[str, str, Table], Table]  # (argument, path, the file's columns) -> prompt / completion columns


@dataclass
class PairData:
    """Splits ``train``/``validation``/``test`` with the columns ``prompt`` and ``completion`` (str).

    ``label_names``: the answers of a classification task rendered as pairs ([] for free-text data); ``kind``: the
    task kind (``kinds.py``) a model of these data is.
    """

    name: str
    splits: datasets.DatasetDict
    label_names: list[str] = field(default_factory=list)
    description: str = ""
    source: str = ""
    kind: str = ""


def columns(options: dict[str, Any]) -> dict[str, str | None]:
    """The text columns of a file, which csv reads as strings."""
    return {"text_column": options.get("text_column", "text"), "text_pair_column": options.get("text_pair_column")}


def probe(task: str, options: dict[str, Any]) -> tuple[str | None, set[str]]:
    """The training file of ``task`` (``train_file``, or ``task`` itself when it names a local file) and its column
    names, which tell pair files from classification files; ``(None, set())`` for data that are not a local file."""
    given = options.get("train_file")
    file = task if given is None and Path(task).is_file() else given
    return file, set(read_file("train_file", file, columns(options))) if file is not None else set()


def from_classification(
    task: str, options: dict[str, Any], render: Renderer, features: datasets.Features, shape: str
) -> tuple[Any, datasets.DatasetDict]:
    """The classification task ``task`` (its ``TaskData``) and its splits with each example as a ``prompt`` rendered
    by ``render`` and its label's name as the ``completion``. Token classification has no such form: refused, the
    message naming ``shape`` (what else the task type trains on, e.g. "instruction data for task_type='causal-lm'")."""
    from .tasks import load_task

    data = load_task(task, **options)
    if data.kind != "sequence":
        raise invalid(
            "task",
            task,
            f"a text-classification task or {shape}; this one is token classification, which has no such form.",
        )
    labels = data.label_names

    def rendered(batch):
        pairs = batch.get("text_pair") or [None] * len(batch["text"])
        return {
            "prompt": [render(data.name, labels, t, p) for t, p in zip(batch["text"], pairs, strict=True)],
            "completion": [labels[i] for i in batch["label"]],
        }

    names = data.splits["train"].column_names
    return data, data.splits.map(rendered, batched=True, remove_columns=names, features=features, desc="Rendering")


def from_files(
    task: str,
    options: dict[str, Any],
    examples: Examples,
    features: datasets.Features,
    text_columns: dict[str, str | None] | None = None,
) -> tuple[str, datasets.DatasetDict, str]:
    """The name, splits and training file of pair files (``train_file``, optionally ``validation_file`` and
    ``test_file``), each file's rows turned into ``prompt`` / ``completion`` columns by ``examples``.
    ``text_columns``: the columns a csv file keeps as strings (as :func:`columns` names them; default: the text
    columns of ``options``), so that a target "0042" stays text."""
    text_columns = text_columns or columns(options)
    from .tasks import _carve, _check_options, _check_positive

    files = {split: options.get(f"{split}_file") for split in SPLITS}
    caps = {"train": options.get("max_train_samples")}
    caps["validation"] = caps["test"] = options.get("max_eval_samples")
    seed = options.get("seed", 42)
    _check_options(task, files["train"], files["validation"], files["test"], caps["train"], caps["test"], seed)
    sizes = {split: options.get(f"{split}_size") for split in ("validation", "test")}
    for split, value in sizes.items():
        if value is not None:
            _check_positive(f"{split}_size", value, "or None")
    tables = {}
    for split, file in files.items():
        if file is not None:
            argument = f"{split}_file"
            tables[split] = examples(argument, file, read_file(argument, file, text_columns))
            if not tables[split]["prompt"]:
                raise AdapterKitError(f"`{argument}`={str(file)!r} holds no examples.")
    tables = _carve(tables, seed, sizes, f"`train_file`={str(files['train'])!r}")
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {k: v[: caps[split]] for k, v in tables[split].items()}, features=features
            )
            for split in SPLITS
        }
    )
    name = task if task and not Path(task).is_file() else Path(files["train"]).stem
    return name, splits, str(files["train"])


__all__ = ["PairData", "columns", "from_classification", "from_files", "probe"]
