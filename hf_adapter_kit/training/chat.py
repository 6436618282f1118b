"""Instruction data as token ids for a decoder LLM: each conversation through the model's chat template, the loss on
the completion only (as TRL's ``completion_only_loss``: prompt tokens get the label -100), batches padded on the
right. The data are TRL's prompt/completion and messages formats (``data/instructions.py``)."""

from __future__ import annotations

import datasets
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from ..data.instructions import InstructionData
from ..errors import AdapterKitError, invalid
from ..metrics import IGNORED
from ..modeling import load_tokenizer


def chat_tokenizer(model_name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, which must have a chat template and an eos token; padding set (eos when it has none)."""
    tokenizer = load_tokenizer(model_name_or_path)
    if not getattr(tokenizer, "chat_template", None):
        raise invalid(
            "model_name_or_path",
            model_name_or_path,
            "a model whose tokenizer has a chat template with task_type='causal-lm' (an instruct/chat model, e.g. "
            "'HuggingFaceTB/SmolLM2-135M-Instruct'); this one has none.",
        )
    if tokenizer.eos_token is None:
        raise invalid("model_name_or_path", model_name_or_path, "a model whose tokenizer has an eos token.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # training batches; generation pads on the left itself
    return tokenizer


def encode_chat(
    tokenizer: PreTrainedTokenizerBase, prompt: list[dict[str, str]], completion: str, max_length: int
) -> dict[str, list[int]]:
    """Token ids of the whole conversation through the chat template, with ``labels`` -100 on the prompt's tokens
    (the template's generation prompt included) and the ids of the answer and its end-of-turn tokens after it.

    Longer than ``max_length``: the prompt loses its first tokens, so that the answer stays whole (an answer longer
    than ``max_length - 1`` tokens keeps its beginning).
    """
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}], tokenize=True)
    if full[: len(prompt_ids)] != prompt_ids:
        raise AdapterKitError(
            f"The chat template of {tokenizer.name_or_path!r} renders a conversation that does not start with its "
            "own generation prompt, so the answer's tokens cannot be told from the prompt's."
        )
    answer = full[len(prompt_ids) :][: max_length - 1]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(answer))) :]
    ids = prompt_ids + answer
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [IGNORED] * len(prompt_ids) + answer,
        "length": len(ids),
    }


def encode_splits(data: InstructionData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    def encode(example):
        return encode_chat(tokenizer, example["prompt"], example["completion"], max_length)

    columns = data.splits["train"].column_names
    return data.splits.map(encode, remove_columns=columns, desc="Tokenizing")


def completion_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """Pads ids with the pad token, attention with 0 and labels with -100, on the right."""
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORED)


__all__ = ["chat_tokenizer", "completion_collator", "encode_chat", "encode_splits"]
