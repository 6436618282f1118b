"""Instruction data for supervised fine-tuning (SFT) of decoder LLMs, in TRL's dataset conventions.

Every example ends as ``prompt`` (a list of chat messages, ``{"role", "content"}``, that the model's chat template
renders) and ``completion`` (the assistant's answer, a string): TRL's *conversational prompt-completion* format. What
goes in:

- Classification data, rendered as instructions: an embedded text-classification task (``tweets-polarity``, ...) or a
  local csv/json/jsonl/parquet file with ``text_column`` / ``label_column``, loaded and split exactly as for
  classification (``tasks.py``). The prompt asks the question (``QUESTIONS``; a generic one for other data), lists
  the answers and gives the text; the completion is the label's name, e.g. "Is this tweet positive or negative?
  Answer with one of: negative, positive. ..." -> "positive".
- Instruction files (jsonl, json, csv or parquet) in TRL's column names, chosen by the train file's columns:
  - ``messages``: a conversation; the last message must be the assistant's, and it is the completion; the messages
    before it are the prompt (the loss covers the last answer only).
  - ``prompt`` and ``completion``: the prompt a string (one user message) or a list of messages; the completion a
    string or a list holding one assistant message.
  Missing validation / test splits are carved from train as for classification files.
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


QUESTIONS = {  # task -> the question its prompts ask
    "tweets-polarity": "Is this tweet positive or negative?",
    "tweets-subjectivity": "Is this tweet objective or subjective?",
    "tweets-3way": "Is this tweet negative, neutral or positive?",
    "rotten-tomatoes": "Is this movie review positive or negative?",
}
GENERIC_QUESTION = "Which label fits this text?"
ROLES = ("system", "user", "assistant")
MESSAGE = list[dict[str, str]]
SHAPE = "instruction data for task_type='causal-lm'"  # what else instruction tuning trains on, for messages
FEATURES = datasets.Features(
    {
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "completion": datasets.Value("string"),
    }
)


@dataclass
class InstructionData(PairData):
    """Splits ``train``/``validation``/``test`` with the columns ``prompt`` (messages) and ``completion`` (str).

    ``label_names``: the answers of a classification task rendered as instructions ([] for free-text data).
    """

    kind: str = "causal-lm"


def render_prompt(task: str, labels: Sequence[str], text: str, pair: str | None = None) -> MESSAGE:
    """The user message asking for the label of ``text`` (and ``pair``)."""
    question = QUESTIONS.get(task, GENERIC_QUESTION)
    what = "Tweet" if task.startswith("tweets-") else "Review" if task == "rotten-tomatoes" else "Text"
    content = f"{question} Answer with one of: {', '.join(labels)}.\n\n{what}: {text}"
    if pair is not None:
        content += f"\n\nSecond text: {pair}"
    return [{"role": "user", "content": content}]


def load_instructions(task: str, **options: Any) -> InstructionData:
    """Instruction data for ``task`` with the options of :func:`~hf_adapter_kit.data.load_task` (``train_file``,
    ``text_column``, ``max_train_samples``, ``seed``...); see the module docstring."""
    train_file, found = probe(task, options)
    if "messages" in found or {"prompt", "completion"} <= found:
        name, splits, source = from_files(task, {**options, "train_file": train_file}, _examples, FEATURES)
        return InstructionData(name, splits, [], f"Instructions from {Path(source).name}", source)
    data, splits = from_classification(task, options, render_prompt, FEATURES, SHAPE)
    return InstructionData(
        data.name, splits, list(data.label_names), f"{data.description}, as instructions", data.source
    )


def _examples(argument: str, path: str, table: Table) -> Table:
    """``prompt`` / ``completion`` columns from a file's ``messages`` or ``prompt`` / ``completion`` columns."""
    where = f"`{argument}`={str(path)!r}"
    if "messages" in table:
        pairs = [_split_messages(where, row, value) for row, value in enumerate(table["messages"])]
    elif {"prompt", "completion"} <= set(table):
        pairs = [
            (_prompt(where, row, prompt), _completion(where, row, completion))
            for row, (prompt, completion) in enumerate(zip(table["prompt"], table["completion"], strict=True))
        ]
    else:
        raise AdapterKitError(
            f"{where} has the columns {sorted(table)}; instruction data needs `messages`, or `prompt` and "
            "`completion` (TRL's names)."
        )
    return {"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]}


def _messages(where: str, row: int, column: str, value: Any) -> MESSAGE:
    allowed = f"a list of messages, each {{'role': one of {list(ROLES)}, 'content': a string}}"
    if not isinstance(value, list) or not value:
        raise AdapterKitError(f"{where}: row {row} (0-based), `{column}`={value!r} is not valid: expected {allowed}.")
    for message in value:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise AdapterKitError(
                f"{where}: row {row} (0-based), `{column}` holds the message {message!r}: expected {allowed}."
            )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _split_messages(where: str, row: int, value: Any) -> tuple[MESSAGE, str]:
    messages = _messages(where, row, "messages", value)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise AdapterKitError(
            f"{where}: row {row} (0-based), `messages` must end with the assistant's answer after at least one "
            f"prompt message; it ends with a {messages[-1]['role']!r} message ({len(messages)} in all)."
        )
    return messages[:-1], messages[-1]["content"]


def _prompt(where: str, row: int, value: Any) -> MESSAGE:
    if isinstance(value, str) and value:
        return [{"role": "user", "content": value}]
    return _messages(where, row, "prompt", value)


def _completion(where: str, row: int, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        message = _messages(where, row, "completion", value)[0]
        if message["role"] == "assistant":
            return message["content"]
    raise AdapterKitError(
        f"{where}: row {row} (0-based), `completion`={value!r} is not valid: expected a string or a list holding "
        "one {'role': 'assistant', 'content': ...} message."
    )
