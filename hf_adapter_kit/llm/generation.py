"""Evaluation by generation: what a model writes for each test prompt, scored against the reference completion.

Two shapes of model, told apart by ``config.is_encoder_decoder``:

- a decoder LLM (``task_type="causal-lm"``): each prompt is chat messages, rendered through the chat template with
  its generation prompt, batches padded on the left, the answer is the tokens after the prompt;
- an encoder-decoder (``task_type="seq2seq-lm"``, T5, BART): each prompt is a string, the encoder's input (truncated
  to ``max_length`` tokens, as in training), batches padded on the right, the answer is what the decoder writes after
  its start token.

For both:

- Generation: greedy (``do_sample=False``), with the KV cache (``use_cache=True``), stopping at the tokenizer's eos
  (the end of an assistant turn; the end of a target), at most ``max_new_tokens`` (default: the longest reference
  answer's token count plus :data:`EXTRA_TOKENS`).
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


def is_encoder_decoder(model: torch.nn.Module) -> bool:
    """An encoder-decoder (T5, BART): the prompt is the encoder's input, the answer the decoder's whole output."""
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _padded(rows: list[list[int]], fill: int, device: torch.device, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` padded with ``fill`` to the longest (on the left for a decoder's prompts), and the attention mask."""
    width = max(len(r) for r in rows)

    def pad(row: list[int], value: int) -> list[int]:
        extra = [value] * (width - len(row))
        return extra + row if left else row + extra

    ids = torch.tensor([pad(r, fill) for r in rows], device=device)
    return ids, torch.tensor([pad([1] * len(r), 0) for r in rows], device=device)


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]] | str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    max_length: int | None = None,
) -> list[str]:
    """Greedy answers, with the KV cache; the new tokens only, decoded without special tokens.

    ``prompts``: chat messages for a decoder LLM, strings (truncated to ``max_length`` tokens) for an
    encoder-decoder (see the module docstring)."""
    was_training = model.training
    model.eval()
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoder_decoder = is_encoder_decoder(model)
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            if encoder_decoder:
                rows = tokenizer(list(batch), truncation=max_length is not None, max_length=max_length)["input_ids"]
            else:
                rows = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True) for p in batch]
            ids, mask = _padded(rows, pad, device, left=not encoder_decoder)
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
            # a decoder's output repeats its prompt; an encoder-decoder's starts with the decoder's start token
            answers += tokenizer.batch_decode(
                out[:, 1 if encoder_decoder else ids.shape[1] :], skip_special_tokens=True
            )
    finally:
        model.train(was_training)
    return answers


@torch.no_grad()
def completion_perplexity(model: torch.nn.Module, encoded: datasets.Dataset, pad_token_id: int) -> float:
    """``exp`` of the mean NLL of the label tokens (-100 elsewhere) of an encoded split, token-weighted.

    A decoder's rows hold prompt and completion in ``input_ids``, its ``labels`` the completion's ids in place (each
    predicted from the tokens before it); an encoder-decoder's ``input_ids`` are the prompt and its ``labels`` the
    target, which the model reads shifted (teacher forcing) and predicts in place."""
    was_training = model.training
    model.eval()
    device = _device(model)
    encoder_decoder = is_encoder_decoder(model)
    total, count = 0.0, 0
    try:
        for start in range(0, len(encoded), PERPLEXITY_BATCH):
            rows = encoded[start : start + PERPLEXITY_BATCH]
            ids, mask = _padded(rows["input_ids"], pad_token_id, device, left=False)
            labels, _ = _padded(rows["labels"], IGNORED, device, left=False)
            if encoder_decoder:
                logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits.float()
                target = labels
            else:
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
    max_length: int | None = None,
) -> GenerationResult:
    """Accuracy of greedy answers and perplexity of the references on one split (see the module docstring);
    ``max_length``: an encoder-decoder's prompts are truncated to it, as in training."""
    if max_new_tokens is None:
        longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=0)
        max_new_tokens = longest + EXTRA_TOKENS
    predictions = generate_answers(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, max_length=max_length
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return GenerationResult(
        accuracy=exact_match_accuracy(predictions, references),
        perplexity=completion_perplexity(model, encoded, pad),
        max_new_tokens=max_new_tokens,
        predictions=predictions,
        references=list(references),
    )
