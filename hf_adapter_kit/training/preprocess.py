"""Tokenization for sequence classification: no padding here (the collator pads each batch to its longest)."""

from __future__ import annotations

import datasets
from transformers import PreTrainedTokenizerBase

from ..data import TaskData


def tokenize_task(task: TaskData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    """Token ids, attention mask, ``labels`` and ``length`` (for length-grouped batches) for every split."""
    has_pair = "text_pair" in task.splits["train"].column_names

    def encode(batch):
        pair = batch["text_pair"] if has_pair else None
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded["labels"] = batch["label"]
        return encoded

    columns = task.splits["train"].column_names
    return task.splits.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")
