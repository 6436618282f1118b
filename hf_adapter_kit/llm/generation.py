"""Evaluation by generation: what a model writes for each test prompt, scored against the reference completion.

- Generation: the prompt through the chat template with its generation prompt, greedy (``do_sample=False``), with the
  KV cache (``use_cache=True``), left-padded batches, stopping at the tokenizer's eos (the end of an assistant turn),
  at most ``max_new_tokens`` (default: the longest reference answer's token count plus :data:`EXTRA_TOKENS`).
- ``accuracy``: the share of answers equal to their reference after :func:`normalize` of both: exact match of the
  first line, case, surrounding spaces and punctuation aside. "Positive." matches "positive"; "The tweet is
  positive." does not.
- ``perplexity``: ``exp`` of the mean negative log-likelihood of the reference completions' tokens given their
  prompts (the tokens that training puts a loss on), over all tokens of the split at once.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from ..errors import invalid
from ..metrics import IGNORED


EXTRA_TOKENS = 8
PERPLEXITY_BATCH = 16  # rows per forward: the logits are rows x length x vocabulary floats


def normalize(text: str) -> str:
    """The first line, stripped of spaces and punctuation at both ends, lowercased, inner spaces collapsed."""
    first = text.strip().split("\n", 1)[0] if text.strip() else ""
    return " ".join(first.strip().strip(string.punctuation + string.whitespace).lower().split())


def exact_match_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after :func:`normalize`."""
    if len(predictions) != len(references):
        raise invalid("predictions", f"{len(predictions)} answers", f"one per reference ({len(references)}).")
    if not references:
        return 0.0
    return sum(normalize(p) == normalize(r) for p, r in zip(predictions, references, strict=True)) / len(references)


@dataclass
class GenerationResult:
    accuracy: float
    perplexity: float
    max_new_tokens: int
    predictions: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    def samples(self, count: int) -> list[dict[str, str]]:
        """The first ``count`` answers beside their references, for the run's record."""
        pairs = zip(self.predictions[:count], self.references[:count], strict=True)
        return [{"generated": p, "reference": r} for p, r in pairs]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers to chat prompts, with the KV cache; the new tokens only, decoded without special tokens."""
    was_training = model.training
    model.eval()
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = [
                tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True)
                for p in prompts[start : start + batch_size]
            ]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                max_new_tokens=max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )
            answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return answers


@torch.no_grad()
def completion_perplexity(model: torch.nn.Module, encoded: datasets.Dataset, pad_token_id: int) -> float:
    """``exp`` of the mean NLL of the label tokens (-100 elsewhere) of an encoded split, token-weighted."""
    was_training = model.training
    model.eval()
    device = _device(model)
    total, count = 0.0, 0
    try:
        for start in range(0, len(encoded), PERPLEXITY_BATCH):
            rows = encoded[start : start + PERPLEXITY_BATCH]
            width = max(len(r) for r in rows["input_ids"])

            def pad(values, fill, width=width):
                return torch.tensor([v + [fill] * (width - len(v)) for v in values], device=device)

            ids, labels = pad(rows["input_ids"], pad_token_id), pad(rows["labels"], IGNORED)
            mask = pad(rows["attention_mask"], 0)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORED, reduction="sum"
            )
            total += float(loss)
            count += int((target != IGNORED).sum())
    finally:
        model.train(was_training)
    return math.exp(total / count) if count else float("nan")


def evaluate_generation(
    model: torch.nn.Module,
    *,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    references: Sequence[str],
    encoded: datasets.Dataset,
    batch_size: int,
    max_new_tokens: int | None = None,
) -> GenerationResult:
    """Accuracy of greedy answers and perplexity of the references on one split (see the module docstring)."""
    if max_new_tokens is None:
        longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=0)
        max_new_tokens = longest + EXTRA_TOKENS
    predictions = generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return GenerationResult(
        accuracy=exact_match_accuracy(predictions, references),
        perplexity=completion_perplexity(model, encoded, pad),
        max_new_tokens=max_new_tokens,
        predictions=predictions,
        references=list(references),
    )
