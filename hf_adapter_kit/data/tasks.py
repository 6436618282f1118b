"""Tasks: the embedded tweet tasks, local files and Hub datasets, as train/validation/test splits.

Every source ends as a ``DatasetDict`` with columns ``text`` (str), optionally ``text_pair`` (str), and ``label``
(int, an index into ``label_names``), checked before anything is trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..errors import AdapterKitError
from .corpus import CORPUS_SOURCE, read_tweets
from .files import read_table


SPLITS = ("train", "validation", "test")
# name -> (label names, sentiment -> label name)
TWEET_TASKS: dict[str, tuple[list[str], dict[str, str]]] = {
    "tweets-polarity": (["negative", "positive"], {"negative": "negative", "positive": "positive"}),
    "tweets-subjectivity": (
        ["objective", "subjective"],
        {"neutral": "objective", "negative": "subjective", "positive": "subjective"},
    ),
    "tweets-3way": (["negative", "neutral", "positive"], {s: s for s in ("negative", "neutral", "positive")}),
}
TWEET_DESCRIPTIONS = {
    "tweets-polarity": "Tweets, positive vs negative sentiment",
    "tweets-subjectivity": "Tweets, neutral (objective) vs opinionated (subjective)",
    "tweets-3way": "Tweets, negative / neutral / positive sentiment",
}
# Column names of Hub datasets that need them, used when the caller left the columns at their defaults.
HUB_PRESETS = {"amazon_polarity": {"text_column": "content", "text_pair_column": "title"}}


@dataclass
class TaskData:
    """A classification task: splits ``train``/``validation``/``test`` and the label names (index = label id)."""

    name: str
    splits: datasets.DatasetDict
    label_names: list[str]
    description: str = ""
    source: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def list_tasks() -> list[str]:
    """The embedded tasks, available offline."""
    return sorted(TWEET_TASKS)


def load_task(
    task: str,
    *,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    validation_size: int = 1000,
    test_size: int = 2000,
) -> TaskData:
    """Load a task by name (embedded), from local files, or from the Hub (needs network), with fixed splits.

    Splits are a seeded permutation: test first, then validation, the rest train; for files or Hub datasets that
    lack a split it is carved from train the same way, taking at most a quarter of train each.
    ``max_train_samples`` / ``max_eval_samples`` cut the splits afterwards, so the test set never depends on them.
    """
    for name, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise AdapterKitError(f"`{name}`={value!r} is not valid: expected a positive integer or None.")
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    if task in TWEET_TASKS and train_file is None:
        data = _tweet_task(task, seed, validation_size, test_size)
    elif train_file is not None or Path(task).is_file():
        files = {"train": train_file or task, "validation": validation_file, "test": test_file}
        tables = {
            split: read_table(f"{split}_file" if split != "train" or train_file else "task", path)
            for split, path in files.items()
            if path is not None
        }
        source = str(files["train"])
        data = _from_tables(task, tables, columns, seed, f"Text classification from {source}", source)
    else:
        data = _hub_task(task, columns, seed)
    data.splits = _cap(data.splits, max_train_samples, max_eval_samples)
    return data


def _tweet_task(task: str, seed: int, validation_size: int, test_size: int) -> TaskData:
    label_names, mapping = TWEET_TASKS[task]
    ids = {name: i for i, name in enumerate(label_names)}
    rows = [(text, ids[mapping[sentiment]]) for sentiment, text in read_tweets() if sentiment in mapping]
    order = np.random.default_rng(seed).permutation(len(rows))
    bounds = {
        "test": (0, test_size),
        "validation": (test_size, test_size + validation_size),
        "train": (test_size + validation_size, len(rows)),
    }
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": [rows[i][0] for i in order[a:b]], "label": [rows[i][1] for i in order[a:b]]},
                features=_features(label_names, pair=False),
            )
            for split, (a, b) in ((s, bounds[s]) for s in SPLITS)
        }
    )
    return TaskData(task, splits, label_names, TWEET_DESCRIPTIONS[task], CORPUS_SOURCE)


def _from_tables(
    name: str,
    tables: dict[str, dict[str, list]],
    columns: dict,
    seed: int,
    description: str,
    source: str,
    label_names: list[str] | None = None,
) -> TaskData:
    """Check and rename the columns, encode labels, carve missing splits: one path for files and Hub datasets."""
    checked = {split: _check_columns(split, table, columns) for split, table in tables.items()}
    label_names = _label_names(checked["train"]["label"], label_names)
    encoded = {split: _encode_labels(split, table, label_names) for split, table in checked.items()}
    splits = _carve_missing(encoded, seed)
    features = _features(label_names, pair=columns["text_pair_column"] is not None)
    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(splits[split], features=features) for split in SPLITS}
    )
    return TaskData(name, dataset, label_names, description, source)


def _hub_task(task: str, columns: dict, seed: int) -> TaskData:
    defaults = {"text_column": "text", "text_pair_column": None, "label_column": "label"}
    if columns == defaults:
        columns = {**columns, **HUB_PRESETS.get(task, {})}
    try:
        loaded = datasets.load_dataset(task)
    except Exception as err:  # offline, unknown id, gated: all mean the same to the caller
        raise AdapterKitError(
            f"`task`={task!r} is not an embedded task ({', '.join(list_tasks())}), not a local file, and could not "
            f"be loaded as a Hub dataset ({err.__class__.__name__}: {str(err)[:200]}). Hub datasets need network."
        ) from err
    label_feature = loaded["train"].features.get(columns["label_column"])
    names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
    tables = {split: loaded[split].to_dict() for split in SPLITS if split in loaded}
    source = f"https://huggingface.co/datasets/{task}"
    return _from_tables(task, tables, columns, seed, f"Hub dataset {task}", source, names)


def _check_columns(split: str, table: dict[str, list], columns: dict) -> dict[str, list]:
    """Rename to text/text_pair/label after checking that the columns exist and hold what they should."""
    present = list(table)
    out = {}
    for argument, target in (("text_column", "text"), ("text_pair_column", "text_pair"), ("label_column", "label")):
        column = columns[argument]
        if column is None:
            continue
        if column not in table:
            raise AdapterKitError(
                f"`{argument}`={column!r} is not a column of the {split} data; its columns are {present}."
            )
        out[target] = list(table[column])
    if not out["text"]:
        raise AdapterKitError(f"The {split} data is empty (0 rows): give at least one example.")
    for target in ("text", "text_pair"):
        for index, value in enumerate(out.get(target, ())):
            if not isinstance(value, str):
                argument = "text_column" if target == "text" else "text_pair_column"
                raise AdapterKitError(
                    f"`{argument}`={columns[argument]!r} must hold strings, but row {index} of the {split} data "
                    f"holds {value!r} ({type(value).__name__})."
                )
    return out


def _label_names(labels: Sequence[Any], names: list[str] | None) -> list[str]:
    if names:
        return names
    if all(isinstance(v, str) for v in labels):
        return sorted(set(labels))
    ints = [_as_int(v, "train", i) for i, v in enumerate(labels)]
    return [str(i) for i in range(max(ints) + 1)]


def _as_int(value: Any, split: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise AdapterKitError(
            f"`label_column`: row {index} of the {split} data holds {value!r}; labels must be strings or "
            "non-negative integers."
        )
    if isinstance(value, float | np.floating) and (math.isnan(value) or not float(value).is_integer()):
        raise AdapterKitError(
            f"`label_column`: row {index} of the {split} data holds {value!r}; labels must be class ids "
            "(regression is not supported yet)."
        )
    if value < 0:
        raise AdapterKitError(f"`label_column`: row {index} of the {split} data holds {value!r}; ids start at 0.")
    return int(value)


def _encode_labels(split: str, table: dict[str, list], label_names: list[str]) -> dict[str, list]:
    ids = {name: i for i, name in enumerate(label_names)}
    encoded = []
    for index, value in enumerate(table["label"]):
        label = ids.get(value) if isinstance(value, str) else _as_int(value, split, index)
        if label is None or label >= len(label_names):
            raise AdapterKitError(
                f"`label_column`: row {index} of the {split} data has the label {value!r}, which is not in the "
                f"label set of the training data: {label_names}."
            )
        encoded.append(label)
    return {**table, "label": encoded}


def _carve_missing(tables: dict[str, dict[str, list]], seed: int) -> dict[str, dict[str, list]]:
    """Take missing validation/test splits from train: a seeded permutation, at most a quarter of train each."""
    train = tables["train"]
    missing = [split for split in ("test", "validation") if split not in tables]
    if not missing:
        return tables
    n = len(train["text"])
    take = max(1, n // 4) if n >= 4 * len(missing) else 0
    if take == 0:
        raise AdapterKitError(
            f"The train data has {n} rows, too few to carve the missing {missing} split(s) from; "
            "give at least 8 rows or pass validation_file/test_file."
        )
    order = np.random.default_rng(seed).permutation(n)
    out = dict(tables)
    start = 0
    for split in missing:
        out[split] = {key: [values[i] for i in order[start : start + take]] for key, values in train.items()}
        start += take
    out["train"] = {key: [values[i] for i in order[start:]] for key, values in train.items()}
    return out


def _cap(splits: datasets.DatasetDict, max_train: int | None, max_eval: int | None) -> datasets.DatasetDict:
    caps = {"train": max_train, "validation": max_eval, "test": max_eval}
    return datasets.DatasetDict(
        {
            split: ds.select(range(caps[split])) if caps[split] is not None and caps[split] < ds.num_rows else ds
            for split, ds in splits.items()
        }
    )


def _features(label_names: list[str], pair: bool) -> datasets.Features:
    columns = {"text": datasets.Value("string")}
    if pair:
        columns["text_pair"] = datasets.Value("string")
    columns["label"] = datasets.ClassLabel(names=label_names)
    return datasets.Features(columns)
