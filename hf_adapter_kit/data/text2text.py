"""Text-to-text data for encoder-decoders (T5, BART), in the form of T5 and of the Hyperformer++ paper: every task is
text in, text out, and the encoder reads which task it is from the input's prefix.

Every example ends as ``prompt`` (the encoder's input, a string) and ``completion`` (the target the decoder writes,
a string), the columns of the generative task types (``pairs.py``). What goes in:

- Classification data, rendered as text-to-text: an embedded text-classification task (``tweets-polarity``, ...), a
  local csv/json/jsonl/parquet file with ``text_column`` / ``label_column`` or a Hub dataset, loaded and split exactly
  as for classification (``tasks.py``). The prompt is the task's name as a prefix, then the text:
  ``"tweets-polarity sentence: <text>"`` (a pair: ``"<task> sentence1: <text> sentence2: <pair>"``), as T5 and
  Hyperformer++ format GLUE (``"sst2 sentence: ..."``); the target is the label's name as a word ("positive"), as in
  T5, so that the decoder writes words it already knows rather than class numbers.
- Text-to-text files (jsonl, json, csv or parquet) with the columns ``prompt`` and ``target`` (or ``completion``,
  TRL's name), strings both; the prompt is used as written (a task prefix, if any, is the file's own). Missing
  validation / test splits are carved from train as for classification files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ..errors import AdapterKitError
from .files import Table
from .pairs import PairData, from_classification, from_files, probe


TARGET_COLUMNS = ("target", "completion")  # the target's column in a text-to-text file, first found wins
SHAPE = "prompt/target files for task_type='seq2seq-lm'"  # what else text-to-text trains on, for messages
FEATURES = datasets.Features({"prompt": datasets.Value("string"), "completion": datasets.Value("string")})


@dataclass
class Text2TextData(PairData):
    """Splits ``train``/``validation``/``test`` with the columns ``prompt`` and ``completion`` (strings).

    ``label_names``: the target words of a classification task rendered as text-to-text ([] for free-text data).
    """

    kind: str = "seq2seq-lm"


def render_source(task: str, labels: Sequence[str], text: str, pair: str | None = None) -> str:
    """The encoder's input for ``text`` (and ``pair``) of ``task``: the task's name as its prefix. ``labels`` are
    not listed: the prefix names the task, whose answers the model learns (the paper's format)."""
    if pair is None:
        return f"{task} sentence: {text}"
    return f"{task} sentence1: {text} sentence2: {pair}"


def load_text2text(task: str, **options: Any) -> Text2TextData:
    """Text-to-text data for ``task`` with the options of :func:`~hf_adapter_kit.data.load_task` (``train_file``,
    ``text_column``, ``max_train_samples``, ``seed``...); see the module docstring."""
    train_file, found = probe(task, options)
    target = next((column for column in TARGET_COLUMNS if column in found), None)
    if "prompt" in found and target is not None:
        strings = {"text_column": "prompt", "text_pair_column": target}  # csv: a target "0042" stays text
        options = {**options, "train_file": train_file}
        name, splits, source = from_files(task, options, _examples, FEATURES, strings)
        return Text2TextData(name, splits, [], f"Text-to-text pairs from {Path(source).name}", source)
    data, splits = from_classification(task, options, render_source, FEATURES, SHAPE)
    description = f"{data.description}, as text-to-text"
    return Text2TextData(data.name, splits, list(data.label_names), description, data.source)


def _examples(argument: str, path: str, table: Table) -> Table:
    """``prompt`` / ``completion`` columns from a file's ``prompt`` and ``target`` (or ``completion``) columns."""
    where = f"`{argument}`={str(path)!r}"
    target = next((column for column in TARGET_COLUMNS if column in table), None)
    if "prompt" not in table or target is None:
        raise AdapterKitError(
            f"{where} has the columns {sorted(table)}; text-to-text data needs `prompt` and `target` (or "
            "`completion`), or a text-classification file's `text_column` and `label_column`."
        )
    for column in ("prompt", target):
        for row, value in enumerate(table[column]):
            if not isinstance(value, str) or (column == "prompt" and not value.strip()):
                what = "a non-empty string" if column == "prompt" else "a string"
                raise AdapterKitError(
                    f"{where}: row {row} (0-based), `{column}`={value!r} is not valid: expected {what}."
                )
    return {"prompt": list(table["prompt"]), "completion": list(table[target])}


__all__ = ["FEATURES", "Text2TextData", "load_text2text", "render_source"]
