"""Text-to-text with an encoder-decoder (T5, mT5, BART, mBART) and any adapter method: ``train(...,
task_type="seq2seq-lm")``, the shape of T5 and of the Hyperformer++ paper.

The data (``data/text2text.py``: prompt/target files, or classification tasks rendered with their task's name as the
prefix and their labels as words) are tokenized with the prompt as the encoder's input and the target as ``labels``,
which the model shifts into the decoder's input itself: the loss is on the target only. The rest is instruction
tuning's (``instructions.py``), whose hooks this strategy fills: the zero-shot base model is measured on the test split
before the adapter is attached, the best checkpoint is picked by validation loss (the ``seq2seq-lm`` kind's best
metric), the trained model is measured the same way (``llm/generation.py``: exact-match accuracy of greedy
generations, perplexity of the targets), and the adapter is saved with ``kind="seq2seq-lm"``, which
``from_pretrained`` rebuilds with ``AutoModelForSeq2SeqLM`` and ``pipeline`` serves as ``"text2text-generation"``.

With ``tasks=[...]`` and a multi-task method (Hyperformer++, parallel), one adapter learns several tasks, each
example routed to its task by ``task_ids`` (batches one task at a time, temperature sampling) while its prefix names
the task too, as in the paper.
"""

from __future__ import annotations

from typing import Any

import datasets
from transformers import AutoConfig, PreTrainedTokenizerBase

from ...data.text2text import Text2TextData, load_text2text
from ...errors import AdapterKitError, invalid
from ...modeling import load_tokenizer, resolve_model_path
from .instructions import InstructionTuning


def seq2seq_tokenizer(model_name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of an encoder-decoder (anything else is refused, before its weights load), padding on the right
    with its pad token (its eos when it has none)."""
    try:
        config = AutoConfig.from_pretrained(
            resolve_model_path(model_name_or_path), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:  # missing files offline, or a model type that needs code
        raise AdapterKitError(
            f"`model_name_or_path`={model_name_or_path!r} could not be loaded ({err.__class__.__name__}: {err}). "
            "Offline, give a local folder of an encoder-decoder (T5, BART); no encoder-decoder is embedded."
        ) from err
    if not getattr(config, "is_encoder_decoder", False):
        raise invalid(
            "model_name_or_path",
            model_name_or_path,
            f"an encoder-decoder (T5, mT5, BART, mBART, ...) with task_type='seq2seq-lm'; this one is a "
            f"{config.model_type!r} model (a decoder LLM trains with task_type='causal-lm', an encoder without a "
            "task_type).",
        )
    tokenizer = load_tokenizer(model_name_or_path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise invalid("model_name_or_path", model_name_or_path, "a model whose tokenizer has a pad or eos token.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def encode_pairs(data: Text2TextData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    """``input_ids`` / ``attention_mask`` of the prompts and ``labels`` of the targets (each ending with the
    tokenizer's eos, which teaches the model to stop), both truncated to ``max_length`` tokens."""

    def encode(batch):
        source = tokenizer(batch["prompt"], truncation=True, max_length=max_length)
        target = tokenizer(text_target=batch["completion"], truncation=True, max_length=max_length)
        return {
            "input_ids": source["input_ids"],
            "attention_mask": source["attention_mask"],
            "labels": target["input_ids"],
            "length": [len(ids) for ids in source["input_ids"]],
        }

    columns = data.splits["train"].column_names
    return data.splits.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")


class TextToText(InstructionTuning):
    task_type = "seq2seq-lm"
    # T5's and BART's forward take no loss arguments: the Trainer would hand them over, because the `adapters`
    # wrapper's forward takes **kwargs; without them the loss is each batch's mean
    loss_kwargs = False

    def load_task(self, name: str, **load_kwargs: Any) -> Text2TextData:
        return load_text2text(name, **load_kwargs)

    def make_tokenizer(self) -> PreTrainedTokenizerBase:
        model_args = self.args.model
        return seq2seq_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code)

    def encode_task(self, data: Text2TextData) -> datasets.DatasetDict:
        return encode_pairs(data, self.tokenizer, self.args.model.max_length)

    def measure_options(self) -> dict[str, Any]:
        return {"max_length": self.args.model.max_length}  # the prompts as training read them


__all__ = ["TextToText", "encode_pairs", "seq2seq_tokenizer"]
