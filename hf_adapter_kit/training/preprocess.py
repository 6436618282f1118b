"""Tokenization: no padding here (the collator pads each batch to its longest).

Token classification aligns the word tags to sub-words with one policy: the first sub-word of each word carries the
word's tag, the word's other sub-words get -100, as do the special tokens (``[CLS]``, ``[SEP]``); -100 is ignored by
the loss and by the metric, so each word is trained on and scored once. Words cut off by ``max_length`` are neither
trained on nor scored, and a word that tokenizes to nothing (some control characters) has no position to carry its
tag. This needs a fast tokenizer (``modeling.load_tokenizer(..., words=True)``), which maps sub-words to words.
"""

from __future__ import annotations

import datasets
from transformers import PreTrainedTokenizerBase

from ..data import TaskData
from ..metrics import IGNORED


def tokenize_task(task: TaskData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    """Token ids, attention mask, ``labels`` and ``length`` (for length-grouped batches) for every split."""
    if task.kind == "token":
        return tokenize_words(task, tokenizer, max_length)
    has_pair = "text_pair" in task.splits["train"].column_names

    def encode(batch):
        pair = batch["text_pair"] if has_pair else None
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded["labels"] = batch["label"]
        return encoded

    columns = task.splits["train"].column_names
    return task.splits.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")


def align_tags(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """One label per sub-word: the word's tag on its first sub-word, -100 on the others and on special tokens."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORED if word is None or word == previous else tags[word])
        previous = word
    return labels


def tokenize_words(task: TaskData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    """Token classification: the words of each sentence as sub-words, ``labels`` aligned by :func:`align_tags`."""

    def encode(batch):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        encoded["labels"] = [align_tags(encoded.word_ids(i), tags) for i, tags in enumerate(batch["tags"])]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    columns = task.splits["train"].column_names
    return task.splits.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")
