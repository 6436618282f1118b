"""Serving: a standard ``transformers`` pipeline with a kit adapter attached and active."""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers

from .backends import get_backend
from .errors import choices, invalid
from .hub import resolve_adapter
from .modeling import PIPELINES, load_tokenizer
from .multitask import MultiTaskModel
from .patches.transformers_pipeline import _original
from .pipelines import multitask_pipeline
from .saving import load_folder, meta_of


SUPPORTED_PIPELINES = tuple(task for tasks in PIPELINES.values() for task in tasks)
# transformers' own function, also once the kit's patch (patches/transformers_pipeline.py) has replaced it.
_transformers_pipeline = _original


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | torch.nn.Module | None = None,
    tokenizer: Any = None,
    *,
    task_ids: Any = None,
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
    generation with the KV cache).
    ``task`` unset: the adapter's own (text classification, token classification or text generation).
    ``kwargs`` go to ``transformers.pipeline`` (``device``, ``top_k``, ``aggregation_strategy``, ``batch_size``...).
    """
    if task is not None and task not in SUPPORTED_PIPELINES:
        raise choices("task", task, SUPPORTED_PIPELINES)
    if model is None:
        raise invalid(
            "model",
            None,
            "an adapter folder, a Hub repo id, or a model from hf_adapter_kit.from_pretrained or train(...).model.",
        )
    if isinstance(model, str | os.PathLike):
        model = load_folder(resolve_adapter(model, revision=revision, token=token, argument="model"))
    if isinstance(model, MultiTaskModel):
        meta = getattr(model, "hf_adapter_kit_meta", None)
        tokenizer = tokenizer or load_tokenizer(meta.base_model if meta else model.config._name_or_path)
        task = task or "text-classification"
        return multitask_pipeline(task, model.eval(), tokenizer, task_ids, _transformers_pipeline, **kwargs)
    if task_ids is not None:
        raise invalid("task_ids", task_ids, "nothing: only a multi-task adapter's pipelines take task_ids.")
    meta = meta_of(model)
    tokenizer = tokenizer or load_tokenizer(meta.base_model)
    base = get_backend(meta.backend).base_model(model)
    serves = PIPELINES[meta.kind]  # by the adapter's head
    task = task or serves[0]  # unnamed: the adapter's own
    if task not in serves:
        raise invalid("task", task, f"one of {list(serves)}: the pipelines of this adapter's {meta.kind!r} head.")
    return _transformers_pipeline(task, model=base.eval(), tokenizer=tokenizer, **kwargs)
