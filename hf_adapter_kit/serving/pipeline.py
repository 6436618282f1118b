"""Serving: a standard ``transformers`` pipeline with a kit adapter attached and active."""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers

from ..backends import get_backend
from ..errors import choices, invalid
from ..folders import check_mergeable, folder_meta, merge_adapter, meta_of, resolve_adapter
from ..kinds import SERVED_PIPELINES, get_kind
from ..modeling import load_tokenizer
from ..multitask import MultiTaskModel
from .loading import from_pretrained
from .pipelines import ROUTED_GENERATION, multitask_pipeline


def _transformers_own() -> Any:
    found = transformers.pipelines.pipeline
    return found.__wrapped__ if getattr(found, "hf_adapter_kit_patch", False) else found


# transformers' own function, also once the kit's wrapper (transformers_pipeline.py) has replaced it.
original_pipeline = _transformers_own()


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | torch.nn.Module | None = None,
    tokenizer: Any = None,
    *,
    task_ids: Any = None,
    merge: bool = False,
    revision: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> transformers.Pipeline:
    """``transformers.pipeline`` over an adapter folder (or a model the kit loaded or trained).

    ``adapters`` has no pipeline support of its own and transformers warns on a ``PeftModel``; the pipeline gets
    the transformers model underneath, in which the adapter layers are attached and active. A multi-task adapter
    is served by :mod:`hf_adapter_kit.pipelines`: ``task_ids`` picks the task for the pipeline (text
    classification also takes it per call and per input), and pipelines built on one loaded model share it. An
    adapter trained with ``task_type="causal-lm"`` is served by ``"text-generation"`` (chat messages or text in,
    generation with the KV cache), one trained with ``task_type="seq2seq-lm"`` by ``"text2text-generation"`` (the
    encoder's input text in); a multi-task one takes ``task_ids`` when built, per call or per input.
    ``merge=True`` (a LoRA adapter's folder or repo id): LoRA folded into the base weights, which then serve at the
    base model's speed.
    ``task`` unset: the adapter's own (text classification, token classification, text generation or
    text-to-text generation).
    ``kwargs`` go to ``transformers.pipeline`` (``device``, ``top_k``, ``aggregation_strategy``, ``batch_size``...).
    """
    if task is not None and task not in SERVED_PIPELINES:
        raise choices("task", task, SERVED_PIPELINES)
    if model is None:
        raise invalid(
            "model",
            None,
            "an adapter folder, a Hub repo id, or a model from hf_adapter_kit.from_pretrained or train(...).model.",
        )
    if not isinstance(merge, bool):
        raise invalid("merge", merge, "True or False.")
    if merge and not isinstance(model, str | os.PathLike):
        raise invalid(
            "merge",
            merge,
            "False when `model` is a loaded model (merging changes its weights in place); give the adapter's folder "
            "or repo id, or load it with hf_adapter_kit.from_pretrained(..., merge=True) and use transformers.pipeline.",
        )
    if isinstance(model, str | os.PathLike):
        directory = resolve_adapter(model, revision=revision, token=token, argument="model")
        if merge:  # checked before the model loads
            check_mergeable(folder_meta(directory))
        model = from_pretrained(directory)
    if isinstance(model, MultiTaskModel):
        meta = getattr(model, "hf_adapter_kit_meta", None)
        tokenizer = tokenizer or load_tokenizer(meta.base_model if meta else model.config._name_or_path)
        task = task or "text-classification"
        return multitask_pipeline(task, model.eval(), tokenizer, task_ids, original_pipeline, **kwargs)
    meta = meta_of(model)
    if task_ids is not None and not meta.tasks:
        raise invalid("task_ids", task_ids, "nothing: only a multi-task adapter's pipelines take task_ids.")
    tokenizer = tokenizer or load_tokenizer(meta.base_model)
    serves = get_kind(meta.kind).pipelines  # by the adapter's head
    task = task or serves[0]  # unnamed: the adapter's own
    if task not in serves:
        raise invalid("task", task, f"one of {list(serves)}: the pipelines of this adapter's {meta.kind!r} head.")
    base = merge_adapter(model) if merge else get_backend(meta.backend).base_model(model)
    if meta.tasks:  # a multi-task generative adapter (causal-lm or seq2seq-lm)
        tasks = [t["name"] for t in meta.tasks]
        kwargs.update(pipeline_class=ROUTED_GENERATION[task], tasks=tasks, task_ids=task_ids)
    return original_pipeline(task, model=base.eval(), tokenizer=tokenizer, **kwargs)
